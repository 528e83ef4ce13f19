"""The dashboard in a real browser: JupyterLab and Voila, Debian's Chromium, exact pixels.

Each test runs once in JupyterLab (the notebook run through ``window.jupyterapp``; Python-side
state is also read back from the kernel) and once in Voila. The expected pixels are computed in
this process from the same model and images with :class:`ipydeepvis.Probe` and
:mod:`ipydeepvis.render`, and compared with whole canvases read back with ``getImageData``
(tolerance 0). The tests of one environment share a page; each sets the state it starts from.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.browser.e2e_support import (
    CROP,
    HIGHLIGHT,
    MARKER,
    PANE,
    SEL_CROP,
    SEL_DASHBOARD,
    SEL_ERRORS,
    SEL_GRID,
    SEL_INPUT,
    SEL_LAYER,
    SEL_METHOD,
    SEL_NOTICE,
    SEL_PATCH,
    SEL_POSITION,
    SEL_PREDICTIONS,
    SEL_PROJECTION,
    SEL_STATUS,
    SEL_THUMBS,
    SEL_UNIT_MAP,
    SEL_UPLOAD,
    THUMB,
    Dashboard,
    State,
    active_toggle,
    choose_layer,
    click_canvas_at,
    click_toggle,
    decode_upload,
    layout_problems,
    pixel,
    press_slider_keys,
    screenshot,
    selected_layer,
    set_slider_via_readout,
    slider_value,
    wait_active_toggle,
    wait_frame,
    wait_slider_value,
)
from tests.widgets.field_oracle import input_ring

pytestmark = pytest.mark.browser


def expect_frames(dash: Dashboard, state: State, image: torch.Tensor | None = None,
                  parts: tuple[str, ...] = ("grid", "unit", "projection"),
                  timeout: float = 30.0) -> None:
    """Wait until the canvases show exactly what ``state`` should show."""
    e = dash.expected
    img = image if image is not None else e.image(state.image)
    if "grid" in parts:
        wait_frame(dash.page, SEL_GRID, e.grid(state, img), layout=e.layout(state.layer),
                   timeout=timeout, name=f"{dash.kind}_grid")
    if "unit" in parts:
        wait_frame(dash.page, SEL_UNIT_MAP, e.unit_map(state, img), timeout=timeout,
                   name=f"{dash.kind}_unitmap")
    if "projection" in parts:
        wait_frame(dash.page, SEL_PROJECTION, e.projection(state, img), timeout=timeout,
                   name=f"{dash.kind}_projection")
        patch = e.patch(state, img)  # beside the projection cropped to the receptive field
        if patch is not None:
            wait_frame(dash.page, SEL_PATCH, patch, timeout=timeout, name=f"{dash.kind}_patch")
    if "input" in parts:
        wait_frame(dash.page, SEL_INPUT, e.input(img, state), timeout=timeout,
                   name=f"{dash.kind}_input")


def grid_png_size(dash: Dashboard, layer: str) -> tuple[int, int]:
    height, width = dash.expected.layout(layer).size
    return (width, height)


def top_prediction(page: Any) -> str:
    """The class on the first row of the top-5 table."""
    rows = [r for r in page.inner_text(SEL_PREDICTIONS).splitlines() if r.strip().endswith("%")]
    assert rows, page.inner_text(SEL_PREDICTIONS)
    return rows[0].rsplit("\t", 1)[0].strip()


def assert_python_state(dash: Dashboard, state: State) -> None:
    """JupyterLab: the kernel's traits agree with what the browser shows, and no error."""
    out = dash.python_state()
    if out is not None:
        assert out.split() == [state.layer, str(state.unit), state.method, str(state.image),
                               state.position, "0"], out


def go_to(dash: Dashboard, unit: int, method: str) -> State:
    """Bring the dashboard to ``unit`` / ``method`` on image 0 and the default layer through
    the UI; wait for it."""
    page = dash.page
    dash.touched = True
    if selected_layer(page) != dash.expected.default_layer:  # a failed test may have left one
        choose_layer(page, list(dash.expected.layers), dash.expected.default_layer)
    click_canvas_at(page, SEL_THUMBS, THUMB // 2, THUMB // 2)  # image 0 (a no-op if shown)
    if active_toggle(page, SEL_METHOD) != method:
        click_toggle(page, SEL_METHOD, method)
        wait_active_toggle(page, SEL_METHOD, method)
    if slider_value(page) != unit:
        set_slider_via_readout(page, unit)
        wait_slider_value(page, unit)
    state = State(dash.expected.default_layer, unit, 0, method)
    expect_frames(dash, state)
    return state


def test_initial_frames_equal_the_expected_pictures(dashboard: Dashboard) -> None:
    check_initial_frames(dashboard)


def check_initial_frames(dash: Dashboard) -> None:
    """After Run All: the quickstart's state, frames equal to the expected pictures, the
    status, the top prediction, no error, nothing overlapping."""
    e, page = dash.expected, dash.page
    assert not dash.touched, (
        "the initial frames need a page no test has changed: the first test on the shared "
        "quickstart pages is test_dashboard_e2e.py's (collect it before test_keyboard_e2e.py)")
    start = dash.subject.image_after_run()  # the quickstart opens on a confident image
    state = State(e.default_layer, dash.subject.unit_after_run, start,
                  dash.subject.method_after_run)
    # the notebook's second cell sets unit 3 and guided backprop (Subject says so)
    wait_slider_value(page, state.unit)
    wait_active_toggle(page, SEL_METHOD, state.method)
    expect_frames(dash, state, parts=("grid", "unit", "projection", "input"), timeout=90)
    wait_frame(page, SEL_THUMBS, e.thumbnails(dash.images, start), name=f"{dash.kind}_thumbs")
    assert slider_value(page) == state.unit
    assert active_toggle(page, SEL_METHOD) == state.method
    assert active_toggle(page, SEL_POSITION) == "max"
    assert selected_layer(page) == state.layer
    page.wait_for_function(
        "sel => document.querySelector(sel).innerText.includes('total')", arg=SEL_STATUS)
    status = page.inner_text(SEL_STATUS)
    assert f"layer {state.layer}" in status and f"unit {state.unit}" in status, status
    assert top_prediction(page) == e.top_class(e.image(start))
    assert page.inner_text(SEL_ERRORS).strip() == ""
    assert_python_state(dash, state)
    assert layout_problems(page) == []
    screenshot(page, f"{dash.kind}_1_initial")


def test_unit_slider_moves_unit_map_projection_and_highlight(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    layer = e.default_layer
    alive = e.alive_units(layer)
    count = e.layout(layer).count
    a = next(u for u in alive if u + 1 in alive and u + 5 < count)
    b = next(u for u in alive[len(alive) // 2:] + alive if abs(u - a) > 4 and u + 5 < count)
    state = go_to(dash, a, "deconvnet")
    grid_size = grid_png_size(dash, layer)
    sent_before = dash.kernel("print(view._grid_canvas.sent_frames)")

    # one step with the keyboard on the slider handle
    mark = dash.pngs.mark()
    press_slider_keys(page, "ArrowRight")
    wait_slider_value(page, a + 1)
    old, state = state, State(layer, a + 1, 0, "deconvnet")
    assert not np.array_equal(e.unit_map(old), e.unit_map(state))
    expect_frames(dash, state)  # the grid canvas: same picture, the ring moved from a to a+1
    picture = e.grid(state, highlight=False)
    for unit, colour in [(a + 1, list(HIGHLIGHT)), (a, None)]:
        x, y, tile, _ = e.tile_box(layer, unit)
        for px, py in [(x, y + tile // 2), (x + tile // 2, y), (x + tile - 1, y + tile // 2)]:
            want = colour or picture[py, px].tolist()
            assert pixel(page, SEL_GRID, px, py) == want, (unit, px, py)
    page.wait_for_timeout(100)
    sent = dash.pngs.since(mark)
    assert grid_size not in sent, f"the grid picture was re-sent for a unit change: {sent}"
    assert sent.count((PANE, PANE)) >= 1, sent  # the unit map ...
    assert sent.count((CROP, CROP)) >= 1, sent  # ... and the projection, cropped

    # an exact value through the editable readout
    mark = dash.pngs.mark()
    set_slider_via_readout(page, b)
    wait_slider_value(page, b)
    state = State(layer, b, 0, "deconvnet")
    expect_frames(dash, state)
    assert grid_size not in dash.pngs.since(mark)
    screenshot(page, f"{dash.kind}_2_unit{b}")

    # four quick presses while the worker is busy: at rest, every canvas matches unit b + 4
    press_slider_keys(page, "ArrowRight", times=4)
    wait_slider_value(page, b + 4)
    state = State(layer, b + 4, 0, "deconvnet")
    expect_frames(dash, state)
    assert_python_state(dash, state)
    if sent_before is not None:
        assert dash.kernel("print(view._grid_canvas.sent_frames)") == sent_before


def test_clicking_a_tile_selects_its_unit(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    layout = e.layout(e.default_layer)
    alive = e.alive_units(e.default_layer)
    target = next((u for u in alive if u >= layout.columns + 2), alive[-1])  # not on row 0
    start = next(u for u in alive if u != target)
    state = go_to(dash, start, "deconvnet")
    mark = dash.pngs.mark()
    y, x = layout.origin(target)
    click_canvas_at(page, SEL_GRID, x + layout.tile // 2, y + layout.tile // 2)
    wait_slider_value(page, target)
    state = State(state.layer, target, 0, "deconvnet")
    expect_frames(dash, state)
    assert grid_png_size(dash, state.layer) not in dash.pngs.since(mark)
    # the padding between two tiles selects nothing
    click_canvas_at(page, SEL_GRID, x + layout.tile, y + 1)
    page.wait_for_timeout(500)
    assert slider_value(page) == target
    label = page.inner_text(".e2e-grid-label")
    assert f"unit {target} of {layout.count}" in label, label
    assert_python_state(dash, state)
    screenshot(page, f"{dash.kind}_3_clicked_unit{target}")


def test_switching_the_method_changes_the_projection(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    state = go_to(dash, e.alive_units(e.default_layer)[0], "deconvnet")
    pictures = {}
    for method in ["guided", "gradient", "deconvnet"]:
        mark = dash.pngs.mark()
        click_toggle(page, SEL_METHOD, method)
        state = State(state.layer, state.unit, 0, method)
        pictures[method] = e.projection(state)
        expect_frames(dash, state, parts=("projection",))
        wait_active_toggle(page, SEL_METHOD, method)
        page.wait_for_timeout(100)
        sent = dash.pngs.since(mark)
        # the projection alone (cropped; the patch under the same field is not re-sent)
        assert sent == [(CROP, CROP)], f"more than the projection was sent: {sent}"
        expect_frames(dash, state, parts=("grid", "unit"))
        if method == "gradient":
            screenshot(page, f"{dash.kind}_4_gradient")
            assert_python_state(dash, state)
    assert not np.array_equal(pictures["guided"], pictures["gradient"])
    assert not np.array_equal(pictures["gradient"], pictures["deconvnet"])


def test_clicking_the_unit_map_seeds_the_projection_there(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    state = go_to(dash, e.alive_units(e.default_layer)[-1], "deconvnet")
    shape = e.layers[state.layer].shape
    h, w = shape[1], shape[2]
    unit_map = e.maps(state.layer, e.image(0))[state.unit]
    values = unit_map.flatten().clone()
    values[int(values.argmax())] = float("-inf")  # the strongest cell is what "max" seeds
    i, j = divmod(int(values.argmax()), w)  # the next strongest: it fires, so it projects
    click_canvas_at(page, SEL_UNIT_MAP, (j + 0.5) * PANE / w, (i + 0.5) * PANE / h)
    wait_active_toggle(page, SEL_POSITION, "clicked")
    clicked = State(state.layer, state.unit, 0, "deconvnet", (i, j))
    assert not np.array_equal(e.projection(clicked), e.projection(state))
    expect_frames(dash, clicked, parts=("projection",))
    out = dash.kernel("print(view.position, tuple(view.clicked))")
    if out is not None:
        assert out.strip() == f"clicked ({i}, {j})", out
    click_toggle(page, SEL_POSITION, "max")
    wait_active_toggle(page, SEL_POSITION, "max")
    expect_frames(dash, state, parts=("projection",))


def test_layer_picker_shows_another_layer(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    state = go_to(dash, 5, "deconvnet")
    names = list(e.layers)
    index = names.index(state.layer)
    previous = names[index - 1]
    channels = int(e.layers[previous].channels or 1)
    page.click(f"{SEL_DASHBOARD} button[title='previous layer']")
    page.wait_for_function("([sel, name]) => document.querySelector(sel + ' select')"
                           r".selectedOptions[0].textContent.trim().split(/\s+/)[0] === name",
                           arg=[SEL_LAYER, previous])
    moved = State(previous, min(state.unit, channels - 1), 0, "deconvnet")
    parts = ("grid", "unit", "projection") if len(e.layers[previous].shape) == 3 else ("grid",)
    expect_frames(dash, moved, parts=parts)
    assert_python_state(dash, moved)
    screenshot(page, f"{dash.kind}_6_layer_{previous}")
    page.select_option(f"{SEL_LAYER} select", index=index)
    wait_slider_value(page, moved.unit)
    expect_frames(dash, State(state.layer, moved.unit, 0, "deconvnet"))


def _upload_png() -> bytes:
    """An RGBA picture of another size than the model's: four coloured quadrants, one half
    transparent (the alpha is dropped by the RGB conversion), and a diagonal gradient."""
    yy, xx = np.mgrid[0:70, 0:100]
    rgba = np.zeros((70, 100, 4), np.uint8)
    rgba[..., 0] = np.where(xx < 50, 230, 20)
    rgba[..., 1] = np.where(yy < 35, 200, 40)
    rgba[..., 2] = ((xx + yy) * 255 // 168).astype(np.uint8)
    rgba[..., 3] = np.where(xx < 50, 255, 128)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def test_uploading_an_image_shows_it_with_a_notice(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    state = go_to(dash, 6, "deconvnet")
    png = _upload_png()
    c, h, w = e.image(0).shape
    uploaded = decode_upload(png, (c, h, w))
    # FileUpload's <input type=file> is never attached to the DOM: its button clicks it, so
    # the file goes in through the chooser that click opens (FileChooser.set_files is
    # set_input_files on that very input element)
    with page.expect_file_chooser() as chooser:
        page.click(SEL_UPLOAD)
    chooser.value.set_files(files=[{"name": "mine.png", "mimeType": "image/png", "buffer": png}])
    notice = f"upload 100×70 → {w}×{h}, centre crop"
    page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText.trim() === text",
                           arg=[SEL_NOTICE, notice], timeout=30_000)
    index = len(dash.images)
    state = State(state.layer, state.unit, index, "deconvnet")
    expect_frames(dash, state, image=uploaded, parts=("input", "grid", "unit", "projection"))
    wait_frame(page, SEL_THUMBS, e.thumbnails([*dash.images, uploaded], index),
               name=f"{dash.kind}_thumbs_upload")
    assert top_prediction(page) == e.top_class(uploaded)
    assert_python_state(dash, state)
    screenshot(page, f"{dash.kind}_5_uploaded")

    # a click on the first thumbnail goes back to image 0
    click_canvas_at(page, SEL_THUMBS, THUMB // 2, THUMB // 2)
    state = State(state.layer, state.unit, 0, "deconvnet")
    expect_frames(dash, state, parts=("input", "grid", "unit", "projection"))
    wait_frame(page, SEL_THUMBS, e.thumbnails([*dash.images, uploaded], 0),
               name=f"{dash.kind}_thumbs_back")
    assert_python_state(dash, state)


def test_an_upload_notice_keeps_the_panes_apart(dashboard: Dashboard) -> None:
    """The notice under the upload button is a long line; it must not push the panes over
    each other (it widens the input column to its own width: in JupyterLab's narrower output
    area the unit-map column then overlaps the activation grid and sticks out on the right)."""
    dash, page = dashboard, dashboard.page
    if "upload " not in page.inner_text(SEL_NOTICE):
        with page.expect_file_chooser() as chooser:
            page.click(SEL_UPLOAD)
        chooser.value.set_files(files=[{"name": "mine.png", "mimeType": "image/png",
                                        "buffer": _upload_png()}])
        page.wait_for_function("sel => document.querySelector(sel).innerText.includes('upload ')",
                               arg=SEL_NOTICE)
    page.wait_for_timeout(300)
    screenshot(page, f"{dash.kind}_7_after_upload_notice")
    assert layout_problems(page) == []
    # the notice is one whole line of the 192 px column (issue 12.10): not wrapped, not cut
    lines, cut, tip = page.eval_on_selector(
        f"{SEL_NOTICE} .deepvis-notice",
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " const tops = new Set(Array.from(r.getClientRects()).map(x => Math.round(x.top)));"
        " return [tops.size, e.scrollWidth > e.clientWidth, e.title]; }")
    assert lines == 1 and not cut, (lines, cut)
    assert "centre-cropped" in tip, tip


def test_the_projection_is_cropped_to_the_receptive_field(dashboard: Dashboard) -> None:
    """Issue 12.7: at conv1 the projection is the unit's 7 px field enlarged, the input patch
    under the same box beside it, and the field outlined on the input; a field clipped by the
    image border keeps its proportions; "crop to receptive field" off shows the whole image."""
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    state = go_to(dash, e.alive_units(e.default_layer)[0], "deconvnet")
    names = list(e.layers)
    first = next(n for n in names if e.layers[n].kind == "conv")  # conv1
    choose_layer(page, names, first)
    unit = next(u for u in e.alive_units(first) if u != state.unit)
    set_slider_via_readout(page, unit)
    wait_slider_value(page, unit)
    state = State(first, unit, 0, "deconvnet")
    image = e.image(0)
    box = e.field(state)
    assert box is not None and box.height < image.shape[1] / 4, box  # a small field
    expect_frames(dash, state, parts=("grid", "unit", "projection", "input"))
    patch = e.patch(state)
    assert patch is not None and (patch[..., 3] == 255).all()  # an unclipped square field
    ring = input_ring(box, tuple(image.shape[1:]))
    assert ring is not None
    rx, ry, rw, rh = ring
    for px, py in [(rx, ry), (rx + rw - 1, ry + rh // 2), (rx + rw // 2, ry + rh - 1)]:
        assert pixel(page, SEL_INPUT, px, py) == list(MARKER), (px, py)
    boxes = {sel: page.eval_on_selector(sel, "c => { const r = c.getBoundingClientRect();"
                                             " return [r.left, r.top, r.width, r.height]; }")
             for sel in (SEL_PROJECTION, SEL_PATCH)}
    (px, py, pw, ph), (qx, qy, qw, qh) = boxes[SEL_PROJECTION], boxes[SEL_PATCH]
    assert (pw, ph, qw, qh) == (CROP, CROP, CROP, CROP) and py == qy and qx >= px + CROP, boxes
    note = page.inner_text(".e2e-projection-note")
    assert f"rows {box.top}..{box.bottom - 1}" in note, note
    assert layout_problems(page) == []
    screenshot(page, f"{dash.kind}_8_crop_conv1")

    # a cell on the top border: the field is clipped there and sits at the bottom of the square
    shape = e.layers[first].shape
    unit_map = e.maps(first, image)[unit]
    top_row = [j for j in range(shape[2]) if float(unit_map[0, j]) > 0]
    if top_row:
        j = top_row[len(top_row) // 2]
        click_canvas_at(page, SEL_UNIT_MAP, (j + 0.5) * PANE / shape[2], 0.5 * PANE / shape[1])
        wait_active_toggle(page, SEL_POSITION, "clicked")
        clicked = State(first, unit, 0, "deconvnet", (0, j))
        clipped = e.field(clicked)
        assert clipped is not None and clipped.top == 0 and clipped.height < clipped.width
        expect_frames(dash, clicked, parts=("projection", "input"))
        screenshot(page, f"{dash.kind}_8_crop_border")
        click_toggle(page, SEL_POSITION, "max")
        wait_active_toggle(page, SEL_POSITION, "max")

    # crop off: the whole image at 192 px, no patch, no outline; on again: the crop
    page.click(f"{SEL_CROP} input[type=checkbox]")
    off = State(first, unit, 0, "deconvnet", crop=False)
    expect_frames(dash, off, parts=("projection", "input"))
    page.wait_for_function("sel => document.querySelector(sel).offsetParent === null",
                           arg=SEL_PATCH)
    out = dash.kernel("print(view.crop)")
    if out is not None:
        assert out.strip() == "False", out
    screenshot(page, f"{dash.kind}_8_crop_off")
    page.click(f"{SEL_CROP} input[type=checkbox]")
    expect_frames(dash, state, parts=("projection", "input"))
    choose_layer(page, names, e.default_layer)
    expect_frames(dash, State(e.default_layer, unit, 0, "deconvnet"), parts=("grid",))
