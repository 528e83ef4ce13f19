"""The dashboard's keys in a real browser (JupyterLab and Voila): Playwright's keyboard in,
the unit slider, the layer dropdown and exact canvas pixels (the grid's ring) out.

ipyevents listens for keys while the pointer is over the picture row, so the test points at the
input picture (a canvas without a click action) before it presses keys, and types into the
unit slider's readout with the pointer on the controls, where the keys stay the slider's.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser.e2e_support import (
    SEL_ERRORS,
    SEL_GRID,
    SEL_INPUT,
    SEL_METHOD,
    SEL_PROJECTION,
    SEL_UNIT_MAP,
    Dashboard,
    State,
    center_in_view,
    screenshot,
    selected_layer,
    set_slider_via_readout,
    slider_value,
    wait_active_toggle,
    wait_frame,
    wait_slider_value,
)
from tests.browser.test_dashboard_e2e import go_to

pytestmark = pytest.mark.browser

SEL_KEYS = ".e2e-keys"
SEL_HELP = ".e2e-keys-help"


def point_at_pictures(dash: Dashboard) -> None:
    """Click the input picture: the pointer enters the watched row, ipyevents starts
    listening (it marks the row ``ipyevents-watched``)."""
    center_in_view(dash.page, SEL_INPUT)
    dash.page.click(SEL_INPUT)
    dash.page.wait_for_selector(f"{SEL_KEYS}.ipyevents-watched", timeout=10_000)


def wait_layer(page: Any, name: str, timeout: float = 15.0) -> None:
    """Wait until the layer dropdown shows ``name``."""
    t0 = time.monotonic()
    while selected_layer(page) != name:
        assert time.monotonic() - t0 < timeout, f"layer {selected_layer(page)!r} != {name!r}"
        page.wait_for_timeout(50)


def expect(dash: Dashboard, state: State, *, projection: State | None = None) -> None:
    """The grid (with its ring on ``state.unit``), the enlarged unit and the projection (of
    ``projection`` when frozen on another unit) are exactly the expected pixels."""
    e, page = dash.expected, dash.page
    wait_frame(page, SEL_GRID, e.grid(state), layout=e.layout(state.layer),
               name=f"{dash.kind}_keys_grid")
    wait_frame(page, SEL_UNIT_MAP, e.unit_map(state), name=f"{dash.kind}_keys_unitmap")
    wait_frame(page, SEL_PROJECTION, e.projection(projection or state),
               name=f"{dash.kind}_keys_projection")


def test_keys_move_unit_row_layer_method_freeze_and_show_help(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    # the page is test_dashboard_e2e's (its tests ran on it first): start from a known state
    state = go_to(dash, dash.subject.unit_after_run, dash.subject.method_after_run)
    layer, image = state.layer, state.image
    layers = list(e.layers)
    columns = e.layout(layer).columns
    expect(dash, state)
    point_at_pictures(dash)

    page.keyboard.press("ArrowRight")  # next unit: slider, ring, unit map, projection
    state = State(layer, state.unit + 1, image, state.method)
    wait_slider_value(page, state.unit)
    expect(dash, state)

    page.keyboard.press("Shift+ArrowDown")  # one row of the grid down
    state = State(layer, state.unit + columns, image, state.method)
    wait_slider_value(page, state.unit)
    expect(dash, state)

    page.keyboard.press("ArrowUp")  # previous layer in the dropdown, its grid
    above = layers[layers.index(layer) - 1]
    wait_layer(page, above)
    wait_frame(page, SEL_GRID, e.grid(State(above, state.unit, image, state.method)),
               layout=e.layout(above), name=f"{dash.kind}_keys_layer_up")
    page.keyboard.press("ArrowDown")
    wait_layer(page, layer)
    expect(dash, state)

    # f: the projection stays on the frozen unit while the selection moves on
    frozen = state
    page.keyboard.press("f")
    page.keyboard.press("ArrowRight")
    state = State(layer, state.unit + 1, image, state.method)
    assert not (e.projection(frozen) == e.projection(state)).all()  # the test can tell
    wait_slider_value(page, state.unit)
    expect(dash, state, projection=frozen)
    page.wait_for_function("sel => document.querySelector(sel).innerText.includes('frozen')",
                           arg=".e2e-projection-note", timeout=15_000)
    page.keyboard.press("f")
    expect(dash, state)

    page.keyboard.press("m")  # the method cycles: guided -> gradient
    methods = ["deconvnet", "guided", "gradient"]
    state = State(layer, state.unit, image, methods[(methods.index(state.method) + 1) % 3])
    wait_active_toggle(page, SEL_METHOD, state.method)
    expect(dash, state)

    page.keyboard.press("b")  # the projection pane hides, and comes back
    page.wait_for_selector(SEL_PROJECTION, state="hidden", timeout=15_000)
    page.keyboard.press("b")
    page.wait_for_selector(SEL_PROJECTION, state="visible", timeout=15_000)

    page.keyboard.press("?")  # the help overlay over the pictures
    page.wait_for_selector(SEL_HELP, state="visible", timeout=15_000)
    text = page.inner_text(SEL_HELP)
    for what in ("previous layer", "next unit", "unit one row down in the grid",
                 "show / hide this help"):
        assert what in text, text
    help_box = page.locator(SEL_HELP).bounding_box()
    grid_box = page.locator(SEL_GRID).bounding_box()
    assert help_box is not None and grid_box is not None
    assert help_box["x"] < grid_box["x"] + grid_box["width"]  # it lies over the pictures
    shot = screenshot(page, f"{dash.kind}_keys_help")
    assert shot.exists()
    page.keyboard.press("Escape")
    page.wait_for_selector(SEL_HELP, state="hidden", timeout=15_000)

    # with the pointer on the controls, typing goes to the slider's readout, not to the keys
    set_slider_via_readout(page, 20)
    wait_slider_value(page, 20)
    state = State(layer, 20, image, state.method)
    expect(dash, state)
    assert slider_value(page) == 20
    assert page.inner_text(SEL_ERRORS).strip() == ""
    out = dash.python_state()  # JupyterLab: the kernel's traits agree
    if out is not None:
        assert out.split() == [layer, "20", state.method, str(image), "max", "0"], out
