"""Notebooks keep no outputs in git (``make demo`` opens working copies, see
``tests/test_make_demo.py``). Every notebook runs top to bottom in Voila, in a real browser:
``tests/browser/test_notebooks_voila.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_keep_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
