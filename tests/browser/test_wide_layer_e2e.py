"""A layer with 512 units in the browser: the grid wraps, tiles are downsampled, clicks still hit.

Runs the stand-in notebook (``standin.py``: a seeded net whose last conv layer has 512 units of
32x32 maps) in Voila. The embedded net of the quickstart has no layer that wide, so this adds
what the main tests cannot see; while ``ipydeepvis.demo`` is missing the main tests run on the
stand-in themselves and this module is skipped.
"""

from __future__ import annotations

import pytest

from tests.browser.e2e_support import (
    SEL_GRID,
    SEL_METHOD,
    Dashboard,
    State,
    active_toggle,
    click_canvas_at,
    demo_available,
    screenshot,
    slider_value,
    wait_frame,
    wait_slider_value,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not demo_available(),
                       reason="ipydeepvis.demo is missing: the main browser tests run on the "
                              "stand-in already"),
]


def test_512_units_wrap_into_a_readable_grid_and_clicks_hit(standin_voila: Dashboard) -> None:
    dash, page, e = standin_voila, standin_voila.page, standin_voila.expected
    layer = e.default_layer
    layout = e.layout(layer)
    _, _, map_h, map_w = (1, *e.layers[layer].shape)
    assert layout.count == 512 and layout.columns == 24 and layout.rows == 22
    assert layout.tile < min(map_h, map_w)  # 32x32 maps shown in 19 px tiles
    state = State(layer, dash.subject.unit_after_run, 0, dash.subject.method_after_run)
    wait_frame(page, SEL_GRID, e.grid(state), layout=layout, timeout=90, name="wide_grid")
    assert slider_value(page) == state.unit
    assert active_toggle(page, SEL_METHOD) == state.method
    screenshot(page, "voila_wide_1_initial")
    alive = e.alive_units(layer)
    target = next(u for u in reversed(alive) if u // layout.columns == layout.rows - 1)
    y, x = layout.origin(target)
    click_canvas_at(page, SEL_GRID, x + layout.tile // 2, y + layout.tile // 2)
    wait_slider_value(page, target)
    state = State(layer, target, 0, state.method)
    wait_frame(page, SEL_GRID, e.grid(state), layout=layout, name="wide_grid_clicked")
    screenshot(page, "voila_wide_2_clicked")
