"""The camera as an image source, headless: frames fed to the Python side of the widget.

The browser half (getUserMedia, the buttons, freeze) is tested in
tests/browser/test_camera_e2e.py with Chromium's fake camera.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as tvf
from traitlets import TraitError

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.errors import InvalidInputError
from ipydeepvis.widgets.camera import CameraFeed, CameraView
from tests.nets import ConvReluPool

SIZE = 16


def net() -> nn.Module:
    return nn.Sequential(ConvReluPool(pool=(2, 2), channels=(3, 4, 6), seed=3))


def images() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def frame_bytes(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A PNG of random pixels, ``size`` = (width, height), as the browser would send it."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def torchvision_frame(data: bytes) -> torch.Tensor:
    """The frame through torchvision's Resize(short side) + CenterCrop, as 0..1 floats: an
    independent computation of what an upload (and so a camera frame) becomes."""
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    picture = tvf.center_crop(tvf.resize(picture, SIZE), [SIZE, SIZE])
    return torch.from_numpy(np.asarray(picture, np.float32) / 255).permute(2, 0, 1)


def expected_grid(view: dv.DeepVis, model: nn.Module, image: torch.Tensor) -> np.ndarray:
    """The activation grid of the view's layer on ``image``, from a plain forward hook."""
    captured = []
    module = dict(model.named_modules())[view.layer]
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(image[None])
    finally:
        handle.remove()
    return render.activation_grid_rgba(captured[0][0], view.grid_layout)


def send(camera: CameraView, data: bytes, frame_id: int) -> None:
    """What the browser's custom message does: content plus one binary buffer."""
    camera._message(camera, {"type": "frame", "id": frame_id, "width": 40, "height": 30},
                    [memoryview(data)])


def test_camera_frames_become_the_input_and_replace_each_other() -> None:
    model = net()
    view = dv.DeepVis(model, images(), threaded=False, camera=True)
    camera = view.add_camera()  # the one camera=True added
    assert isinstance(camera, CameraView) and camera.frame_size == SIZE
    assert camera in view.panes["input"].widget.children
    layer = view.layer
    for frame_id, seed in [(7, 1), (8, 2)]:
        data = frame_bytes(seed)
        send(camera, data, frame_id)
        expected = torchvision_frame(data)
        assert len(view._images) == 3 and view.image_index == 2  # one camera entry, replaced
        assert torch.allclose(view._images[2], expected, atol=1e-6)
        assert camera.shown_frame == frame_id
        assert view.layer == layer
        np.testing.assert_array_equal(view.frames["grid"], expected_grid(view, model, expected))
        np.testing.assert_array_equal(
            view.frames["input"],
            render.to_rgba(render.resize_nearest(render.image_to_uint8(expected), 192, 192)))
        assert "camera 40×30 → 16×16, centre crop" in view._notice.value
    assert camera.received == 2
    view.close()


def test_a_burst_of_frames_renders_once_more_with_the_newest() -> None:
    model = net()
    view = dv.DeepVis(model, images(), threaded=True, camera=True)
    assert view.wait()
    camera = view._camera.camera
    grid = view.panes["grid"]
    entered, release = threading.Event(), threading.Event()
    renders: list[torch.Tensor] = []
    compute = grid.compute

    def slow_compute(state):  # type: ignore[no-untyped-def]
        renders.append(view._images[state.image_index].clone())
        entered.set()
        release.wait(30)
        return compute(state)

    decoded: list[int] = []
    decode = CameraFeed._decode

    def counting_decode(v, frame):  # type: ignore[no-untyped-def]
        decoded.append(frame.id)
        return decode(v, frame)

    grid.compute = slow_compute
    CameraFeed._decode = staticmethod(counting_decode)  # type: ignore[method-assign]
    try:
        frames = {i: frame_bytes(i) for i in range(1, 21)}
        send(camera, frames[1], 1)  # the first frame adds the camera image: one render
        assert entered.wait(30)
        for i in range(2, 21):  # 19 more while that render is busy
            send(camera, frames[i], i)
        release.set()
        assert view.wait(60)
    finally:
        CameraFeed._decode = staticmethod(decode)  # type: ignore[method-assign]
    assert camera.received == 20
    assert len(renders) == 2, f"{len(renders)} renders for 20 frames"
    assert decoded == [1, 20]  # frames 2..19 were never even decoded
    newest = torchvision_frame(frames[20])
    assert torch.allclose(renders[-1], newest, atol=1e-6)
    assert torch.allclose(view._images[view.image_index], newest, atol=1e-6)
    np.testing.assert_array_equal(view.frames["grid"], expected_grid(view, model, newest))
    assert camera.shown_frame == 20
    view.close()


def test_frames_of_an_unselected_camera_only_refresh_its_thumbnail() -> None:
    view = dv.DeepVis(net(), images(), threaded=False)
    camera = view.add_camera()
    send(camera, frame_bytes(1), 1)
    view.image_index = 0
    shown = view.frames["input"].copy()
    grid = view.frames["grid"].copy()
    thumbs = view.frames["thumbnails"].copy()
    send(camera, frame_bytes(2), 2)
    assert view.image_index == 0
    np.testing.assert_array_equal(view.frames["input"], shown)
    np.testing.assert_array_equal(view.frames["grid"], grid)
    assert not np.array_equal(view.frames["thumbnails"], thumbs)  # the camera's thumbnail
    camera.running = True  # start selects the camera image again
    assert view.image_index == 2
    assert torch.allclose(view._images[2], torchvision_frame(frame_bytes(2)), atol=1e-6)
    view.close()


def test_a_broken_frame_is_shown_as_an_error_and_the_next_one_works() -> None:
    view = dv.DeepVis(net(), images(), threaded=False, camera=True)
    camera = view._camera.camera
    send(camera, frame_bytes(1), 1)
    send(camera, b"not a picture", 2)
    assert "the camera frame is not an image PIL can read" in view._status.value
    send(camera, frame_bytes(3), 3)
    assert torch.allclose(view._images[2], torchvision_frame(frame_bytes(3)), atol=1e-6)
    assert camera.shown_frame == 3
    with pytest.raises(InvalidInputError, match="non-empty bytes"):
        camera.push_frame(b"")
    view.close()


def test_camera_traits_refuse_bad_values_and_round_trip() -> None:
    camera = CameraView(fps=2.5, frame_size=64)
    for name, value, text in [("fps", 0.0, "fps must be between 0.2 and 30.0, got 0.0"),
                              ("frame_size", 2, "frame_size must be 8 to 4096 px, got 2"),
                              ("format", "image/gif", "format must be one of 'image/jpeg', "
                               "'image/png', got 'image/gif'"),
                              ("quality", 1.5, "quality must be between 0 and 1, got 1.5"),
                              ("max_in_flight", 0, "max_in_flight must be 1 to 100 frames, "
                               "got 0")]:
        with pytest.raises(TraitError, match=text):
            setattr(camera, name, value)
    state = camera.get_state()
    assert (state["fps"], state["frame_size"], state["running"], state["frozen"]) == (
        2.5, 64, False, False)
    assert "getUserMedia" in state["_esm"] and "deepvis-camera" in state["_css"]
    other = CameraView()
    other.set_state({k: state[k] for k in ("fps", "frame_size", "frozen", "format")})
    assert (other.fps, other.frame_size, other.format) == (2.5, 64, "image/jpeg")
    camera.close()
    other.close()


def test_closing_the_view_closes_the_camera_and_ignores_late_frames() -> None:
    view = dv.DeepVis(net(), images(), threaded=False, camera=True)
    camera = view._camera.camera
    send(camera, frame_bytes(1), 1)
    view.close()
    assert camera.comm is None  # closed with the view's widget tree
    camera.push_frame(frame_bytes(2))  # a frame still in flight: nothing happens
    assert repr(view) == "DeepVis(closed)"


def test_an_analysis_of_an_older_frame_is_not_shown_for_a_newer_one() -> None:
    view = dv.DeepVis(net(), images(), threaded=False, camera=True)
    camera = view._camera.camera
    occlusion = view.panes["occlusion"]
    send(camera, frame_bytes(1), 1)
    occlusion.request(run=True)
    first = occlusion.result[1].values.copy()
    assert "press <b>Run</b>" not in occlusion.status.value
    send(camera, frame_bytes(2), 2)  # the map above is of frame 1: not shown for frame 2
    assert occlusion.result is None
    assert "not computed for this selection yet" in occlusion.status.value
    occlusion.request(run=True)
    second = occlusion.result[1].values
    expected = dv.occlusion(view.model_at(-1), torchvision_frame(frame_bytes(2)),
                            target=(view.layer, view.unit), patch=occlusion.patch.value,
                            stride=occlusion.stride.value).values
    np.testing.assert_allclose(second, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, second)
    view.close()
