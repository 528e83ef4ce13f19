"""Notebooks keep no outputs in git, and those with checks of their kernel's final state run
headless here (nbclient), where the kernel can be asked: every widget they show is still open
at the end, and ``your_model.ipynb`` holds one torchvision model at a time.

Every notebook also runs top to bottom in Voila, in a real browser
(``tests/browser/test_notebooks_voila.py``: no cell raises, every widget displays, pictures
shown); the notebooks without kernel checks run there only, not twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Appended to a notebook before it runs: what must hold in its kernel at the end. your_model's
# picker keeps one torchvision model's weights alive at a time (the one its dashboard shows; the
# probe's shadow module tree shares those weights, so models count by their weights' storage).
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


class WidgetTrackingClient(NotebookClient):
    """A NotebookClient that also records which widget comms were opened and closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: set[str] = set()
        self.closed: set[str] = set()

    def handle_comm_msg(self, outs: list, msg: dict[str, Any], cell_index: int) -> None:
        comm_id = msg["content"].get("comm_id")
        if msg["msg_type"] == "comm_open":
            self.opened.add(comm_id)
        elif msg["msg_type"] == "comm_close":
            self.closed.add(comm_id)
        super().handle_comm_msg(outs, msg, cell_index)


def shown_widgets(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, model id) of every widget the executed notebook displays."""
    return [(index, output["data"][WIDGET_VIEW]["model_id"])
            for index, cell in enumerate(notebook.cells)
            for output in cell.get("outputs", [])
            if WIDGET_VIEW in output.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_keep_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


CHECKED = [p for p in NOTEBOOKS if p.stem in FINAL_CHECKS]


def test_every_kernel_check_names_a_notebook() -> None:
    assert sorted(p.stem for p in CHECKED) == sorted(FINAL_CHECKS)


@pytest.mark.slow  # 20-90 s per notebook here
@pytest.mark.parametrize("path", CHECKED, ids=[p.stem for p in CHECKED])
def test_notebook_runs_and_ends_in_the_checked_state(path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Never download pretrained weights in tests (your_model.ipynb falls back to random ones).
    monkeypatch.setenv("IPYDEEPVIS_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    check = FINAL_CHECKS[path.stem]
    notebook.cells.append(nbformat.v4.new_code_cell(check[0]))
    client = WidgetTrackingClient(notebook, timeout=300, kernel_name="python3",
                                  resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in notebook.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the notebook shows no picture"
    shown = shown_widgets(notebook)
    assert all(model_id in client.opened for _, model_id in shown)
    gone = [(index, model_id) for index, model_id in shown if model_id in client.closed]
    assert not gone, f"cells (index, widget) show widgets that a later cell closed: {gone}"
    assert notebook.cells[-1].outputs[0].text.strip() == check[1]
