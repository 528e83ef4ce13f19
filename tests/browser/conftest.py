"""Browser fixtures: Chromium, a JupyterLab or Voila server showing the dashboard, the page.

The ``dashboard`` fixture is parametrized over ``lab`` and ``voila``: one server and one page per
environment, shared by the tests of the quickstart modules (each test sets the state it starts
from); the other pages are module-scoped. Servers, kernels and browser contexts are stopped
at teardown, also when start-up fails. A failing test leaves a full-page screenshot in
``test-artifacts/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.e2e_support import (
    ART_DIR,
    QUICKSTART,
    SCRUBBER,
    SEL_GRID,
    SEL_PROJECTION,
    STANDIN,
    VIEWPORT,
    Dashboard,
    Expected,
    PngWatch,
    Subject,
    demo_available,
    lab_open,
    lab_run_all,
    launch_chromium,
    missing_requirements,
    notebook7_open,
    reap_servers,
    start_lab,
    start_notebook7,
    start_voila,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + report.when, report)


@pytest.fixture(scope="session", autouse=True)
def _servers_exit_before_the_session_ends() -> Iterator[None]:
    yield
    reap_servers()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium; skipped when it is missing, except under CI (which installs it)."""
    problem = missing_requirements()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {problem}", pytrace=False)
        pytest.skip(f"{problem}; under CI=true this is an error")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        try:
            yield chromium
        finally:
            chromium.close()


def main_subject() -> Subject:
    """The real quickstart once ``ipydeepvis.demo`` exists, else the stand-in notebook."""
    return QUICKSTART if demo_available() else STANDIN


@pytest.fixture(scope="session")
def subject() -> Subject:
    return main_subject()


@pytest.fixture(scope="session")
def expected(subject: Subject) -> Expected:
    return Expected.of(subject)


def _open(kind: str, browser: Any, subject: Subject, expected: Expected,
          tmp: Any, viewport: dict[str, int] = VIEWPORT) -> Iterator[Dashboard]:
    root = tmp / "root"
    root.mkdir()
    subject.write(root)
    t0 = time.monotonic()
    if kind == "lab":
        server = start_lab(tmp, root)
    elif kind == "notebook7":
        server = start_notebook7(tmp, root)
    else:
        server = start_voila(tmp, root, subject.notebook)
    context = None
    try:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(30_000)
        logs: list[str] = []
        page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
        pngs = PngWatch(page)
        dash = Dashboard(kind, page, server, subject, expected, pngs, logs)
        dash.timings["server_start_s"] = server.startup_s
        if kind in ("lab", "notebook7"):
            opener = lab_open if kind == "lab" else notebook7_open
            opener(page, server.base, subject.notebook)
            dash.timings["kernel_idle_s"] = time.monotonic() - t0
            lab_run_all(page)
        else:
            page.goto(f"{server.base}/", timeout=180_000)  # Voila runs the notebook here
        page.wait_for_selector(SEL_GRID, timeout=120_000)
        page.wait_for_selector(SEL_PROJECTION, timeout=60_000)
        dash.timings["dashboard_shown_s"] = time.monotonic() - t0
        print(f"\n[timing] {kind} {subject.notebook}: " + ", ".join(
            f"{k} {v:.1f}" for k, v in dash.timings.items()))
        yield dash
    except BaseException:
        print(f"--- {kind} server log ---\n{server.log_tail()}")
        raise
    finally:
        if context is not None:
            context.close()
        server.stop()


@pytest.fixture(scope="session", params=["lab", "voila"])
def dashboard(request: pytest.FixtureRequest, browser: Any, subject: Subject,
              expected: Expected, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The quickstart in JupyterLab and in Voila, shared by ``test_dashboard_e2e.py`` (whose
    first test checks the page as Run All left it) and ``test_keyboard_e2e.py``, which
    ``tests/conftest.py`` makes one unit of work (one worker, one pair of pages)."""
    kind = request.param
    yield from _open(kind, browser, subject, expected, tmp_path_factory.mktemp(kind))


@pytest.fixture(scope="module")
def notebook7(browser: Any, subject: Subject, expected: Expected,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The dashboard in Jupyter Notebook 7 (one module's page; the Lab and Voila pages are the
    ``dashboard`` fixture's)."""
    yield from _open("notebook7", browser, subject, expected, tmp_path_factory.mktemp("nb7"))


@pytest.fixture(scope="module")
def standin_voila(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The stand-in notebook (a 512-unit layer) in Voila."""
    yield from _open("voila", browser, STANDIN, Expected.of(STANDIN),
                     tmp_path_factory.mktemp("standin"))


@pytest.fixture(scope="module", params=["voila", "lab"])
def scrubber_page(request: pytest.FixtureRequest, browser: Any,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The dashboard with the epoch scrubber on the shipped series (``SCRUBBER``), in a
    viewport tall enough for the whole view (dashboard, strip and the four plots) without
    scrolling, so screenshots of its parts are plain clips."""
    if not demo_available():
        pytest.skip("ipydeepvis.demo is missing: no checkpoint series to scrub")
    kind = request.param
    yield from _open(kind, browser, SCRUBBER, Expected.of(SCRUBBER),
                     tmp_path_factory.mktemp(f"scrubber-{kind}"),
                     viewport={"width": 1500, "height": 2300})


@pytest.fixture(autouse=True)
def _artifacts_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    ART_DIR.mkdir(exist_ok=True)
    yield
    report = getattr(request.node, "rep_call", None)
    names = [n for n in ("dashboard", "standin_voila", "scrubber_page", "laptop")
             if n in request.fixturenames]
    if report is None or not report.failed or not names:
        return
    dash: Dashboard = request.getfixturevalue(names[0])
    name = request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    try:
        dash.page.screenshot(path=str(ART_DIR / f"FAILED_{name}.png"), full_page=True)
    except Exception as exc:  # the page may be gone; the report matters more
        print(f"no failure screenshot: {exc}")
    print("\n".join(dash.logs[-30:]))
    print(f"--- server log ---\n{dash.server.log_tail(20)}")
