"""The quickstart in JupyterLab on a laptop-sized window, light and dark (issue 12: 5, 13, 14).

JupyterLab at 1100 x 900 px with its file browser open leaves the notebook an output area of
about 670 px. There the dashboard keeps the enlarged unit and the projection to the right of
the activation grid (the input column moves above them); in both JupyterLab themes the text
follows the theme's colours, the thumbnails sit on the page's own background (no white
block in the dark theme) and a clicked canvas shows no focus outline. A unit that does not
fire says so in the page, and so does a layer with no rectifier below it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import _open
from tests.browser.e2e_support import (
    ART_DIR,
    SEL_GRID,
    SEL_LAYER,
    SEL_PROJECTION,
    SEL_STATUS,
    SEL_THUMBS,
    SEL_UNIT_MAP,
    THUMB,
    THUMB_COLUMNS,
    THUMB_PAD,
    Dashboard,
    Expected,
    State,
    center_in_view,
    choose_layer,
    click_canvas_at,
    demo_available,
    layout_problems,
    selected_layer,
    set_lab_theme,
    set_slider_via_readout,
    slider_value,
    wait_frame,
    wait_slider_value,
)

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1100, "height": 900}
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
SEL_NOTE = ".e2e-projection-note"


@pytest.fixture(scope="module")
def laptop_page(browser: Any, subject: Any, expected: Expected,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The quickstart in JupyterLab at 1100 px with the file browser open, starting in the
    light theme (through the user settings the isolated server reads)."""
    if not demo_available():
        pytest.skip("the quickstart needs ipydeepvis.demo")
    tmp = tmp_path_factory.mktemp("laptop")
    settings = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "themes.jupyterlab-settings").write_text(json.dumps({"theme": THEMES["light"]}))
    yield from _open("lab", browser, subject, expected, tmp, viewport=LAPTOP)


@pytest.fixture(scope="module", params=list(THEMES))
def laptop(request: pytest.FixtureRequest, laptop_page: Dashboard) -> Dashboard:
    """That page in the light, then the dark theme, switched as a user does (Settings >
    Theme: JupyterLab's ``apputils:change-theme`` command), back on the quickstart's layer and
    unit."""
    theme, dash = request.param, laptop_page
    page, e = dash.page, dash.expected
    dash.kind = f"lab-{theme}"
    set_lab_theme(page, THEMES[theme])
    if selected_layer(page) != e.default_layer:
        choose_layer(page, list(e.layers), e.default_layer)
    unit = dash.subject.unit_after_run
    if slider_value(page) != unit:
        set_slider_via_readout(page, unit)
        wait_slider_value(page, unit)
    return dash


def box(page: Any, selector: str) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of the first element matching ``selector``."""
    return tuple(page.eval_on_selector(  # type: ignore[return-value]
        selector, "e => { const r = e.getBoundingClientRect();"
                  " return [r.left, r.top, r.right, r.bottom]; }"))


def luminance(css_colour: str) -> float:
    """Mean of the r, g, b of a computed ``rgb(...)`` / ``rgba(...)`` colour."""
    values = css_colour[css_colour.index("(") + 1:css_colour.index(")")].split(",")
    return float(np.mean([float(v) for v in values[:3]]))


def test_unit_and_projection_stay_right_of_the_grid(laptop: Dashboard) -> None:
    page = laptop.page
    sidebar = box(page, "#jp-left-stack")
    assert sidebar[2] - sidebar[0] > 200, "the file browser should be open"
    output = box(page, ".jp-OutputArea-output .deepvis")
    assert output[2] - output[0] < 700, f"the output area is {output}: not a narrow one"
    grid, unit, projection = (box(page, s) for s in (SEL_GRID, SEL_UNIT_MAP, SEL_PROJECTION))
    assert unit[0] >= grid[2] - 0.5 and projection[0] >= grid[2] - 0.5, (grid, unit)
    assert unit[1] < grid[3] and abs(unit[1] - grid[1]) < 1, (grid, unit)  # same row
    assert layout_problems(page) == []
    center_in_view(page, SEL_GRID)
    page.screenshot(path=str(ART_DIR / f"{laptop.kind}_1100px.png"))


def test_theme_colours_thumbnails_and_no_focus_outline(laptop: Dashboard) -> None:
    page, dark = laptop.page, laptop.kind.endswith("dark")
    assert page.evaluate("() => document.body.dataset.jpThemeLight") == (
        "false" if dark else "true")
    page.wait_for_function(
        "sel => document.querySelector(sel).innerText.includes('total')", arg=SEL_STATUS)
    text = luminance(page.eval_on_selector(SEL_STATUS, "e => getComputedStyle(e).color"))
    assert (text > 150) if dark else (text < 100), text

    # the thumbnail sheet's empty cells show the page: dark in the dark theme
    count = len(laptop.images)
    row, col = divmod(count, THUMB_COLUMNS)  # the first empty cell
    assert col != 0, "pick a subject whose last thumbnail row is not full"
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    shot = page.locator(SEL_THUMBS).screenshot()
    path = ART_DIR / f"{laptop.kind}_thumbs.png"
    path.write_bytes(shot)
    picture = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    step = THUMB + THUMB_PAD
    empty = picture[row * step + 4:row * step + THUMB - 4, col * step + 4:]
    assert empty.size and ((empty.mean() < 80) if dark else (empty.mean() > 200)), empty.mean()

    # a click focuses the canvas (ipycanvas does) but draws no outline around it
    layout = laptop.expected.layout(laptop.expected.default_layer)
    y, x = layout.origin(1)
    click_canvas_at(page, SEL_GRID, x + layout.tile // 2, y + layout.tile // 2)
    wait_slider_value(page, 1)
    focused, outline = page.evaluate(
        "sel => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return [e.matches(sel), s.outlineStyle === 'none' || s.outlineWidth === '0px']; }",
        SEL_GRID)
    assert focused and outline, (focused, outline)
    page.mouse.move(0, 0)
    page.locator(".deepvis").first.screenshot(path=str(ART_DIR / f"{laptop.kind}_view.png"))


def test_a_silent_unit_and_a_layer_without_rectifiers_say_so(laptop: Dashboard) -> None:
    page, e = laptop.page, laptop.expected
    image = laptop.subject.image_after_run()
    layer = e.default_layer
    peaks = e.maps(layer, e.image(image)).flatten(1).max(1).values
    silent = [u for u in range(len(peaks)) if float(peaks[u]) <= 0]
    assert silent, f"no unit of {layer} is silent on image {image}"
    unit = silent[0]
    set_slider_via_readout(page, unit)
    wait_slider_value(page, unit)
    text = f"unit {unit} is not active on this image: max {float(peaks[unit]):.3g}"
    page.wait_for_function("([sel, t]) => document.querySelector(sel).innerText.includes(t)",
                           arg=[SEL_NOTE, text])
    wait_frame(page, SEL_PROJECTION, e.projection(State(layer, unit, image)),
               name=f"{laptop.kind}_silent")
    assert (e.projection(State(layer, unit, image))[..., :3] == 128).all()

    first_conv = next(n for n, info in e.layers.items() if info.kind == "conv")
    page.select_option(f"{SEL_LAYER} select", index=list(e.layers).index(first_conv))
    page.wait_for_function(
        "([sel, t]) => document.querySelector(sel).innerText.includes(t)",
        arg=[SEL_NOTE, f"no rectifier lies below {first_conv}"])
