"""Every notebook in ``notebooks/`` under Voila: all cells run, every widget it shows displays,
it shows a picture, and a notebook with a check of its kernel's final state passes it.

Voila runs the notebook top to bottom, then the page asks the kernel for the widgets of each
output. A widget that a later cell closed reads "Error displaying widget: model not found"
(``your_model.ipynb`` once closed its AlexNet and VGG16 dashboards to free memory); a cell
that raised stops Voila there, with the error in the page. The list of notebooks is a glob, so a
new notebook is checked as soon as it exists. Pretrained weights are never downloaded here
(``IPYDEEPVIS_OFFLINE=1``: ``your_model.ipynb`` uses random ones, with a notice).
``maximize.ipynb`` runs with 24 optimization steps instead of its 80
(``IPYDEEPVIS_MAXIMIZE_STEPS``, the knob its first cell names): the same calls, a third of the
time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.browser.e2e_support import (
    ART_DIR,
    REPO,
    SEL_DASHBOARD,
    SEL_GRID,
    VIEWPORT,
    Server,
    start_voila,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# What the page holds once Voila has run every cell and the widget manager has rendered every
# widget output ("Loading widget..." is the renderer's text until the model arrives).
PAGE_STATE_JS = """() => {
  const outputs = [...document.querySelectorAll('.jp-OutputArea-output')];
  return {
    loading: document.getElementById('loading') !== null,
    pending: outputs.filter(o => o.textContent.trim() === 'Loading widget...').length,
    widgetErrors: outputs.map(o => o.textContent.trim())
      .filter(t => t.startsWith('Error displaying widget')),
    cells: document.querySelectorAll('div[cell-index]').length,
    errors: [...document.querySelectorAll('.jp-OutputArea-output')]
      .filter(o => o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
                   && /Traceback|Error:|ExecutionError|timed out/.test(o.textContent))
      .map(o => o.textContent.slice(0, 400)),
  };
}"""

# Appended to a notebook's copy before Voila runs it: what must hold in its kernel at the end,
# and what the cell prints then. your_model's picker keeps one torchvision model's weights alive
# at a time (the one its dashboard shows; the probe's shadow module tree shares those weights,
# so models count by their weights' storage).
FINAL_CHECKS = {
    "your_model": (
        "import gc\n"
        "gc.collect()\n"
        "alive = sorted({next(o.parameters()).untyped_storage().data_ptr(): type(o).__name__\n"
        "                for o in gc.get_objects()\n"
        "                if type(o).__name__ in ('AlexNet', 'VGG', 'ResNet')}.values())\n"
        "print(alive)",
        "['ResNet']",
    ),
}

LAST_CELL_TEXT_JS = """() => { const cells = document.querySelectorAll('div[cell-index]');
  return cells.length ? cells[cells.length - 1].innerText.trim() : null; }"""

SEL_PICTURE = '.jp-OutputArea-output img[src^="data:image/png"]'

# Pixels drawn on each dashboard's activation grid: a dashboard whose render worker is gone
# (closed) would leave its canvas blank.
GRID_INK_JS = """(sel) => [...document.querySelectorAll(sel)].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return ink; })"""


@pytest.fixture(scope="module")
def notebook_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``notebooks/`` (Voila runs a notebook in its folder; runs may write files)."""
    root = tmp_path_factory.mktemp("notebooks") / "root"
    shutil.copytree(REPO / "notebooks", root)
    return root


@pytest.fixture
def voila_on(browser: Any, notebook_root: Path, tmp_path: Path) -> Iterator[Any]:
    """Open a notebook in Voila (its own server and kernel); yields (page, server)."""
    servers: list[Server] = []
    contexts: list[Any] = []

    def open_notebook(name: str) -> tuple[Any, Server]:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("IPYDEEPVIS_OFFLINE", "1")
            env.setenv("IPYDEEPVIS_MAXIMIZE_STEPS", "24")
            server = start_voila(tmp_path, notebook_root, name)
        servers.append(server)
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page, server

    try:
        yield open_notebook
    finally:
        for context in contexts:
            context.close()
        for server in servers:
            server.stop()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_widget_of_the_notebook_displays_in_voila(voila_on: Any, notebook_root: Path,
                                                       path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    check = FINAL_CHECKS.get(path.stem)
    if check is not None:  # on the module's copy of the notebooks
        notebook.cells.append(nbformat.v4.new_code_cell(check[0]))
        nbformat.write(notebook, notebook_root / path.name)
    cells = len(notebook.cells)
    page, server = voila_on(path.name)
    t0 = time.monotonic()
    try:
        page.goto(f"{server.base}/", timeout=600_000)  # Voila runs the notebook here
        page.wait_for_function(
            f"() => ({PAGE_STATE_JS})().loading === false && ({PAGE_STATE_JS})().pending === 0",
            timeout=180_000, polling=250)
        state = page.evaluate(PAGE_STATE_JS)
        print(f"\n[timing] voila {path.name}: shown after {time.monotonic() - t0:.1f} s")
        assert not state["errors"], f"{path.name}: cells raised under Voila: {state['errors']}"
        assert "Error at server while executing cell" not in server.log_tail(400)
        assert state["cells"] == cells, (
            f"{path.name}: Voila stopped after {state['cells']} of {cells} cells")
        try:  # image outputs are rendered after the widgets' "Loading" text is gone
            page.wait_for_function(f"() => document.querySelectorAll('{SEL_PICTURE}').length",
                                   timeout=30_000)
        except Exception as exc:
            raise AssertionError(f"{path.name}: the notebook shows no picture") from exc
        assert not state["widgetErrors"], (
            f"{path.name}: widgets that do not display: {state['widgetErrors']}")
        if check is not None:
            assert page.evaluate(LAST_CELL_TEXT_JS) == check[1], path.name
        dashboards = page.locator(SEL_DASHBOARD).count()
        if dashboards:  # each one drew its activation grid (its worker is alive)
            page.wait_for_function(
                f"() => ({GRID_INK_JS})('{SEL_GRID}').length === {dashboards}"
                f" && ({GRID_INK_JS})('{SEL_GRID}').every(n => n > 0)", timeout=120_000)
    except BaseException:
        ART_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(ART_DIR / f"FAILED_voila_{path.stem}.png"), full_page=True)
        print(f"--- voila server log ---\n{server.log_tail(40)}")
        raise
