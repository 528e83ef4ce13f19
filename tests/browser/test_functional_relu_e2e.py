"""Issue 12 item 8 in the browser: a model whose ReLUs are ``F.relu`` calls offers them as
layers in the layer list, starts on the deepest (conv2's rectified output), and draws their maps.

Runs the stand-in ``relu_standin.py`` in Voila only: the layer list is a plain dropdown, drawn
the same in JupyterLab (checked once, both passed), and a second server would cost the suite
about a minute.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import _open
from tests.browser.e2e_support import (
    SEL_GRID,
    SEL_LAYER,
    Dashboard,
    Expected,
    State,
    Subject,
    _write_notebook,
    screenshot,
    selected_layer,
    wait_frame,
)

pytestmark = pytest.mark.browser
HERE = Path(__file__).resolve().parent


def _write(root: Path) -> None:
    from tests.browser import relu_standin

    shutil.copy(HERE / "relu_standin.py", root / "relu_standin.py")
    _write_notebook(root / "relu_standin.ipynb", [
        ("markdown", "# ipydeepvis stand-in: ReLUs written as F.relu calls"),
        ("code", relu_standin.NOTEBOOK_CELL),
    ])


def _load() -> Any:
    from tests.browser import relu_standin

    return relu_standin.load()


RELU_STANDIN = Subject("relu_standin", "relu_standin.ipynb", _write, _load, unit_after_run=0,
                       method_after_run="deconvnet")


@pytest.fixture(scope="module")
def relu_page(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    yield from _open("voila", browser, RELU_STANDIN, Expected.of(RELU_STANDIN),
                     tmp_path_factory.mktemp("relu_voila"))


def test_functional_relus_are_listed_shown_and_the_start(relu_page: Dashboard) -> None:
    dash, page, e = relu_page, relu_page.page, relu_page.expected
    options = page.eval_on_selector_all(f"{SEL_LAYER} select option",
                                        "os => os.map(o => o.textContent.trim().split(/\\s+/)[0])")
    assert options == ["conv1", "conv1.relu", "conv2", "conv2.relu", "fc"]
    assert e.default_layer == "conv2.relu"
    assert selected_layer(page) == "conv2.relu"
    wait_frame(page, SEL_GRID, e.grid(State("conv2.relu", 0)), layout=e.layout("conv2.relu"),
               timeout=90, name=f"relu_grid_{dash.kind}")
    screenshot(page, f"{dash.kind}_functional_relu_1_initial")
    page.select_option(f"{SEL_LAYER} select", index=options.index("conv1.relu"))
    wait_frame(page, SEL_GRID, e.grid(State("conv1.relu", 0)), layout=e.layout("conv1.relu"),
               name=f"relu_grid_conv1_{dash.kind}")
    image = e.image(0)  # the grid drew the rectified maps, not the conv's
    assert float(e.maps("conv1", image).min()) < 0 <= float(e.maps("conv1.relu", image).min())
    screenshot(page, f"{dash.kind}_functional_relu_2_conv1")
