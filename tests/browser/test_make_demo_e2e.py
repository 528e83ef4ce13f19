"""``make demo`` in JupyterLab: running and saving the quickstart leaves ``git status`` clean.

The target opens working copies of the notebooks in ``.demo/`` (git-ignored) and hands ``ARGS``
to JupyterLab. Here it runs in a throw-away git repository holding the Makefile, .gitignore
and notebooks/ of this checkout, with the running Python's environment as its ``VENV`` (``-o``
skips the install step), on the port and with the options given through ``ARGS``. The page
runs every cell and saves; the saved outputs must land in ``.demo/quickstart.ipynb`` and the
tracked notebook must stay as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.e2e_support import (
    REPO,
    SEL_GRID,
    VENV_BIN,
    VIEWPORT,
    free_port,
    isolated_env,
    lab_open,
    lab_run_all,
    wait_http,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAB_ARGS = ("--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
            "--IdentityProvider.token= --ServerApp.password= --LabApp.news_url=None "
            "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"
            " --LabApp.expose_app_in_browser=True --LabApp.extension_manager=readonly")

SAVE_JS = """async () => { const app = window.jupyterapp; const nb = app.shell.currentWidget;
  await app.commands.execute('docmanager:save'); return nb.context.model.dirty; }"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def outputs_of(path: Path) -> list[dict[str, Any]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with this checkout's Makefile, .gitignore and notebooks, committed."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("Makefile", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "x")
    return root


@pytest.fixture
def make_demo(repo: Path, tmp_path: Path) -> Iterator[str]:
    """``make demo ARGS=...`` started in ``repo``; yields the server's URL. The whole process
    group (make, the shell, JupyterLab, kernels) is stopped at the end."""
    port = free_port()
    venv = VENV_BIN.parent
    cmd = ["make", "--no-print-directory", "demo", f"VENV={venv}", "-o", f"{venv}/.app",
           f"ARGS={LAB_ARGS.format(port=port)}"]
    log = open(tmp_path / "make-demo.log", "w")
    proc = subprocess.Popen(cmd, cwd=repo, env=isolated_env(tmp_path), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/status", 120, proc)
        yield base
    except BaseException:
        log.flush()
        print((tmp_path / "make-demo.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this test started, by its id
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_make_demo_runs_and_saves_in_working_copies(browser: Any, repo: Path,
                                                    make_demo: str) -> None:
    tracked = (repo / "notebooks" / "quickstart.ipynb").read_bytes()
    copies = sorted(p.name for p in (repo / ".demo").glob("*.ipynb"))
    assert copies == sorted(p.name for p in (repo / "notebooks").glob("*.ipynb"))
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        lab_open(page, make_demo, "quickstart.ipynb")  # the server's root is .demo/
        lab_run_all(page)
        page.wait_for_selector(SEL_GRID, timeout=120_000)
        assert page.evaluate(SAVE_JS) is False  # saved: nothing unsaved left
    finally:
        context.close()
    saved = repo / ".demo" / "quickstart.ipynb"
    deadline = time.monotonic() + 30
    while not outputs_of(saved) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outputs_of(saved), "the run's outputs were not saved into .demo/quickstart.ipynb"
    assert (repo / "notebooks" / "quickstart.ipynb").read_bytes() == tracked
    assert git(repo, "status", "--porcelain") == ""
