"""The camera as an image source, in JupyterLab and Voila, with Chromium's fake camera.

Chromium launched with ``--use-fake-device-for-media-stream`` has a camera that draws a moving
pattern, and ``--use-fake-ui-for-media-stream`` answers the permission prompt with "allow".
Those flags are for this module's browser only (every other test runs without a camera).
What is checked: frames reach the input canvas and keep changing it, freeze frame stops them
(no frame is sent, the pixels stay), and the activation grid and enlarged unit then show exactly
what the model makes of the frozen picture, computed here from the input canvas's pixels.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.browser.e2e_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SEL_GRID,
    SEL_INPUT,
    SEL_UNIT_MAP,
    Dashboard,
    Expected,
    State,
    Subject,
    _load_demo,
    _write_notebook,
    demo_available,
    read_canvas,
    screenshot,
    wait_frame,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not demo_available(), reason="ipydeepvis.demo is missing"),
]

FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
SEL_CAMERA = ".deepvis-camera"
CAMERA_CELL = """\
import ipydeepvis as dv

demo = dv.demo.load()
view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=8, camera=True)
view"""


def _write_camera(root: Path) -> None:
    _write_notebook(root / "camera.ipynb", [
        ("markdown", "# ipydeepvis: the browser's camera as the dashboard's image"),
        ("code", CAMERA_CELL),
    ])


CAMERA = Subject("camera", "camera.ipynb", _write_camera, _load_demo, unit_after_run=0,
                 method_after_run="deconvnet")


@pytest.fixture(scope="module")
def camera_browser(browser: Any) -> Iterator[Any]:
    """A second Chromium, with the fake camera (same Playwright as the session's browser)."""
    chromium = browser.browser_type.launch(executable_path=CHROMIUM, headless=True,
                                           args=[*CHROMIUM_ARGS, *FAKE_CAMERA])
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module", params=["lab", "voila"])
def camera_page(request: pytest.FixtureRequest, camera_browser: Any,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    from tests.browser.conftest import _open

    kind = request.param
    yield from _open(kind, camera_browser, CAMERA, Expected.of(CAMERA),
                     tmp_path_factory.mktemp(f"camera-{kind}"))


def dataset(page: Any) -> dict[str, str]:
    """The camera element's data attributes (sentFrames, shownFrame, latencyMs, frozen...)."""
    return dict(page.eval_on_selector(SEL_CAMERA, "e => Object.assign({}, e.dataset)"))


def wait_shown(page: Any, frame: int, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([sel, n]) => +(document.querySelector(sel).dataset.shownFrame || 0) >= n",
        arg=[SEL_CAMERA, frame], timeout=timeout)


def wait_canvas_settled(page: Any, selector: str, quiet_ms: int = 500,
                        timeout: float = 15.0) -> Any:
    """The canvas's pixels once two reads ``quiet_ms`` apart agree."""
    deadline = time.monotonic() + timeout
    last = read_canvas(page, selector)
    while True:
        page.wait_for_timeout(quiet_ms)
        now = read_canvas(page, selector)
        if np.array_equal(now, last):
            return now
        assert time.monotonic() < deadline, f"{selector} kept changing for {timeout} s"
        last = now


def test_camera_frames_drive_the_dashboard_and_freeze_stops_them(
        camera_page: Dashboard) -> None:
    dash, page, e = camera_page, camera_page.page, camera_page.expected
    page.wait_for_selector(f"{SEL_CAMERA} .deepvis-camera-start")
    assert dataset(page).get("running") == "false"
    video_shown = f"() => getComputedStyle(document.querySelector('{SEL_CAMERA} video')).display"
    assert page.evaluate(video_shown) == "none"  # off: no empty black box under the input
    before = read_canvas(page, SEL_INPUT)  # a data-set image
    page.click(f"{SEL_CAMERA} .deepvis-camera-start")
    wait_shown(page, 2)
    assert page.evaluate(video_shown) != "none"

    # live: the fake camera's moving pattern keeps changing the input canvas
    first = read_canvas(page, SEL_INPUT)
    assert not np.array_equal(first, before)
    shown = int(dataset(page)["shownFrame"])
    wait_shown(page, shown + 3)
    assert not np.array_equal(read_canvas(page, SEL_INPUT), first)

    # freeze: one last frame of the paused picture, then nothing
    page.click(f"{SEL_CAMERA} .deepvis-camera-freeze")
    page.wait_for_function(
        "sel => { const d = document.querySelector(sel).dataset;"
        " return d.frozen === 'true' && !!d.frozenFrame && d.sentFrames === d.frozenFrame"
        " && d.shownFrame === d.frozenFrame; }",
        arg=SEL_CAMERA, timeout=30_000)
    sent = dataset(page)["sentFrames"]
    # the echo of the frame's id can reach the page before the canvas has painted the frame
    # (ipycanvas processes its draw commands asynchronously): take the picture it settles on
    frozen = wait_canvas_settled(page, SEL_INPUT)
    page.wait_for_timeout(1500)  # 7 frame periods at 5 frames/s
    assert dataset(page)["sentFrames"] == sent
    np.testing.assert_array_equal(read_canvas(page, SEL_INPUT), frozen)

    # the grid and the enlarged unit follow the frame: exactly the model's answer to the
    # frozen picture (the 64 px image is on the 192 px canvas 3x enlarged, nearest)
    image = torch.from_numpy(frozen[::3, ::3, :3].astype(np.float32) / 255).permute(2, 0, 1)
    state = State(e.default_layer, 0)
    wait_frame(page, SEL_GRID, e.grid(state, image), layout=e.layout(state.layer),
               name=f"camera_grid_{dash.kind}")
    wait_frame(page, SEL_UNIT_MAP, e.unit_map(state, image), name=f"camera_unit_{dash.kind}")
    status = page.inner_text(f"{SEL_CAMERA} .deepvis-camera-status")
    assert f"frame {sent} shown" in status and "(frozen)" in status, status
    screenshot(page, f"camera_{dash.kind}_frozen")
    if dash.kind == "lab":
        out = dash.kernel("assert view.wait(); c = view._camera.camera; "
                          "print(view.image_index, len(view._images), c.shown_frame, c.frozen)")
        assert out is not None and out.split() == ["8", "9", sent, "True"], out

    # live again, then stop
    page.click(f"{SEL_CAMERA} .deepvis-camera-freeze")
    wait_shown(page, int(sent) + 2)
    assert not np.array_equal(read_canvas(page, SEL_INPUT), frozen)
    page.click(f"{SEL_CAMERA} .deepvis-camera-start")
    page.wait_for_function("sel => document.querySelector(sel).dataset.running === 'false'",
                           arg=SEL_CAMERA)
    assert page.eval_on_selector(f"{SEL_CAMERA} video", "v => v.srcObject") is None
    assert page.evaluate(video_shown) == "none"

    # a refused permission and a page without the camera API are said in words
    page.evaluate("() => { navigator.mediaDevices.getUserMedia = () => Promise.reject("
                  "new DOMException('Permission denied', 'NotAllowedError')); }")
    page.click(f"{SEL_CAMERA} .deepvis-camera-start")
    refused = "permission denied (NotAllowedError: Permission denied)"
    page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText === text",
                           arg=[f"{SEL_CAMERA} .deepvis-camera-status", refused])
    assert dataset(page)["running"] == "false"
    assert "deepvis-error" in page.get_attribute(f"{SEL_CAMERA} .deepvis-camera-status",
                                                 "class")
    screenshot(page, f"camera_{dash.kind}_refused", SEL_CAMERA)
    if dash.kind == "lab":
        out = dash.kernel("print(repr(view._camera.camera.error), view._camera.camera.running)")
        assert out is not None and out.strip() == f"'{refused}' False", out
    page.evaluate("() => { delete navigator.mediaDevices.getUserMedia;"
                  " Object.defineProperty(navigator, 'mediaDevices', {value: undefined}); }")
    page.click(f"{SEL_CAMERA} .deepvis-camera-start")
    page.wait_for_function("sel => document.querySelector(sel).innerText.includes('HTTPS')",
                           arg=f"{SEL_CAMERA} .deepvis-camera-status")
    assert dataset(page)["running"] == "false"
    errors = [line for line in dash.logs if "anywidget" in line.lower() and "error" in line]
    assert not errors, errors
