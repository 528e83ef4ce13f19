"""The dashboard headless: traits drive the right computations, frames are the right pixels."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from traitlets import TraitError

import ipydeepvis as dv
from ipydeepvis import render
from tests.nets import ConvReluPool, assert_same_state, model_state
from tests.widgets.field_oracle import FIELD_COLOR, cropped_pair, input_ring, seed_field


class _Calls:
    """A call counter that the probe's shadow copy of the model shares (copying returns it).

    ``count``: forward passes with the weights; ``surrogate``: the receptive-field measurement's
    float64 passes (all-ones weights, core/receptive.py), which never see the image."""

    def __init__(self) -> None:
        self.count = 0
        self.surrogate = 0

    def __deepcopy__(self, memo: dict[int, object]) -> _Calls:
        return self


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = ConvReluPool(pool=(2, 2), channels=(3, 8, 12), seed=1)
        self.fc = nn.Linear(12 * 4 * 4, 5)
        self.calls = _Calls()

    @property
    def forwards(self) -> int:
        return self.calls.count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            self.calls.surrogate += 1
        else:
            self.calls.count += 1
        return self.fc(self.features(x).flatten(1))


@pytest.fixture
def model() -> Classifier:
    return Classifier()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def make(model: nn.Module, images: torch.Tensor, **kw: object) -> dv.DeepVis:
    return dv.DeepVis(model, images, classes=list("abcde"), threaded=False, **kw)


def plain_activation(model: Classifier, image: torch.Tensor, module: nn.Module) -> torch.Tensor:
    captured = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    with torch.no_grad():
        model.eval()(image[None])
    handle.remove()
    return captured[0][0]


def test_initial_frames_show_the_last_conv_layer(model: Classifier, images: torch.Tensor) -> None:
    view = make(model, images)
    assert view.layer == "features.3" and view.unit == 0
    maps = plain_activation(model, images[0], model.features[3])
    layout = view.grid_layout
    grid = view.frames["grid"]
    assert grid is not None and grid.shape == (*layout.size, 4)
    top = float(maps.clamp(min=0).max())
    for unit in range(12):  # each tile's top-left pixel is the map's (0, 0) value, scaled
        y, x = layout.origin(unit)
        expected = round(255 * max(float(maps[unit, 0, 0]), 0) / top)
        assert grid[y, x].tolist() == [expected] * 3 + [255]
    assert np.array_equal(grid, render.activation_grid_rgba(maps, layout))
    assert view.frames["unit"].shape == (192, 192, 4)
    assert "features.3" in view._status.value


def test_unit_and_method_changes_never_run_the_model(model: Classifier,
                                                     images: torch.Tensor) -> None:
    view = make(model, images)
    forwards, surrogate = model.forwards, model.calls.surrogate
    grid_before = view._grid_canvas.sent_frames
    for unit in [3, 7, 11]:
        view.unit = unit
    for method in ["guided", "gradient", "deconvnet"]:
        view.method = method
    view.position = "all"
    assert model.calls.surrogate == surrogate  # the layer's receptive fields: one recorded pass
    view.layer = "features.0"  # another layer of the same image: from the recorded pass
    view.display = "norm"
    view.crop = False
    assert model.forwards == forwards
    assert model.calls.surrogate == surrogate + 1  # ... and one for the new layer
    assert view._grid_canvas.sent_frames == grid_before + 1  # only the layer change re-sent it
    view.image_index = 2
    assert model.forwards == forwards + 1


def test_projection_frame_equals_an_independent_rendering(model: Classifier,
                                                          images: torch.Tensor) -> None:
    view = make(model, images)
    view.unit = 5
    view.method = "guided"
    view.display = "gray"
    view.contrast = 2.0
    projection = dv.Probe(model).project(images[0], "features.3", 5, method="guided")[0]
    box = seed_field(model, images[0], "features.3", 5, "max")
    cropped, patch = cropped_pair(projection, images[0], box, "gray", 2.0)
    assert np.array_equal(view.frames["projection"], cropped)
    assert np.array_equal(view.frames["patch"], patch)
    view.crop = False  # the whole image, as before the crop
    picture = render.projection_picture(projection, "gray", 2.0)
    expected = render.to_rgba(render.resize_nearest(picture, 192, 192))
    assert np.array_equal(view.frames["projection"], expected)


def test_clicks_map_to_units_and_positions(model: Classifier, images: torch.Tensor) -> None:
    view = make(model, images)
    layout = view.grid_layout
    y, x = layout.origin(7)
    view.click_grid(x + layout.tile / 2, y + layout.tile / 2)
    assert view.unit == 7
    view.click_grid(x + layout.tile + 0.5, y)  # the padding between tiles selects nothing
    assert view.unit == 7
    view.click_unit_map(191, 0)  # top-right corner of an 8x8 map shown at 192 px
    assert (view.position, view.clicked) == ("clicked", (0, 7))
    projection = dv.Probe(model).project(images[0], "features.3", 7, position=(0, 7))[0]
    box = seed_field(model, images[0], "features.3", 7, (0, 7))
    assert np.array_equal(view.frames["projection"], cropped_pair(projection, images[0], box)[0])


def test_layer_change_clamps_the_unit_and_moves_the_highlight(model: Classifier,
                                                              images: torch.Tensor) -> None:
    view = make(model, images)
    view.unit = 11
    view.layer = "features.0"  # 8 units
    assert view.unit == 7 and view._unit_slider.max == 7
    y, x = view.grid_layout.origin(7)
    assert view._grid_canvas.highlight_box == (x, y, view.grid_layout.tile,
                                               view.grid_layout.tile)
    view._step_layer(+1)
    assert view.layer == "features.1"


def test_bad_trait_values_are_refused(model: Classifier, images: torch.Tensor) -> None:
    view = make(model, images)
    with pytest.raises(TraitError, match=r"unit 12 is out of range for layer 'features.3': 0..11"):
        view.unit = 12
    with pytest.raises(TraitError, match=r"layer 'nope' is not shown here"):
        view.layer = "nope"
    with pytest.raises(TraitError, match=r"method must be one of .*got 'lrp'"):
        view.method = "lrp"
    with pytest.raises(TraitError, match=r"image_index 3 is out of range: 0..2"):
        view.image_index = 3


def test_predictions_and_state_round_trip(model: Classifier, images: torch.Tensor) -> None:
    view = make(model, images)
    logits = model.eval()(images[:1]).detach()[0]
    best = int(logits.argmax())
    assert view._predictions.value.index(f"<td>{'abcde'[best]}</td>") == \
        view._predictions.value.index("<td>")
    view.unit, view.method, view.image_index = 4, "gradient", 1
    state = view.get_state()
    other = make(model, images)
    other.set_state({k: state[k] for k in ["layer", "unit", "method", "image_index"]})
    assert (other.layer, other.unit, other.method, other.image_index) == (
        "features.3", 4, "gradient", 1)


def test_errors_land_in_the_widget(model: Classifier) -> None:
    images = torch.rand(2, 3, 16, 16)
    images[1, 0, 0, 0] = float("nan")
    view = make(model, images)
    view.image_index = 1
    text = "".join(o["text"] for o in view._errors.outputs)
    assert "InvalidInputError" in text and "NaN" in text
    assert "error" in view._status.value
    view.image_index = 0  # and it goes on working
    assert "error" not in view._status.value


def test_model_is_left_as_it_was(model: Classifier, images: torch.Tensor) -> None:
    model.train()
    before = model_state(model)
    view = make(model, images)
    view.unit, view.method, view.layer, view.image_index = 2, "guided", "features.1", 2
    assert_same_state(before, model)


def test_upload_converts_and_resizes_with_a_notice(model: Classifier,
                                                   images: torch.Tensor) -> None:
    view = make(model, images)
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(buffer, "PNG")
    view._uploaded({"new": [{"content": memoryview(buffer.getvalue()), "name": "x.png"}]})
    assert view.image_index == 3
    assert view._notice.value == (
        "<div class='deepvis-notice' title='uploaded image (converted from RGBA to RGB; "
        "resized from 40×30 to 21×16 (short side); centre-cropped to 16×16)'>"
        "upload 40×30 → 16×16, centre crop</div>")
    added = view._images[3]
    assert added.shape == (3, 16, 16) and torch.allclose(added[0], torch.ones(16, 16))
    assert torch.equal(added[1], torch.zeros(16, 16))
    assert view.frames["input"][0, 0].tolist() == [255, 0, 0, 255]


def test_save_png(model: Classifier, images: torch.Tensor, tmp_path: Path) -> None:
    view = make(model, images)
    path = view.save_png(tmp_path / "view.png")
    saved = np.asarray(Image.open(path))
    top = 2 * (render.FONT_SIZE + 6)  # a title line and the captions
    assert saved.shape[0] == top + max(f.shape[0] for f in [view.frames["grid"],
                                                            view.frames["unit"]])
    box = seed_field(model, images[0], "features.3", 0, "max")
    ring = input_ring(box, (16, 16))
    assert ring is not None and view._input_canvas.highlight_box == ring
    assert np.array_equal(saved[top:top + 192, :192],
                          render.outline(view.frames["input"], ring, FIELD_COLOR))


class Slow(Classifier):
    """A model whose forward takes 50 ms and whose projections are counted."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return super().forward(x)


def test_threaded_worker_lets_the_last_request_win(images: torch.Tensor) -> None:
    model = Slow()
    view = dv.DeepVis(model, images)
    assert view.wait()
    calls = []
    original = view.probe.project
    gate = threading.Event()

    def slow_project(*args: object, **kw: object) -> torch.Tensor:
        gate.wait(5)
        calls.append(args[2])
        return original(*args, **kw)

    view.probe.project = slow_project  # type: ignore[method-assign]
    for unit in range(12):  # twelve slider ticks while the first one is still computing
        view.unit = unit
    gate.set()
    assert view.wait()
    assert calls[-1] == 11 and len(calls) <= 3
    direct = dv.Probe(model).project(images[0], "features.3", 11)[0]
    box = seed_field(model, images[0], "features.3", 11, "max")
    assert np.array_equal(view.frames["projection"], cropped_pair(direct, images[0], box)[0])
    view.close()


def test_512_unit_layer_wraps_into_a_readable_grid() -> None:
    model = nn.Sequential(nn.Conv2d(3, 512, 3, padding=1), nn.ReLU())
    view = dv.DeepVis(model, torch.rand(1, 3, 10, 10), threaded=False)
    layout = view.grid_layout
    assert (layout.columns, layout.rows, layout.tile) == (24, 22, 19)  # 19 px tiles, 480 px
    assert view.frames["grid"].shape == (22 * 20 - 1, 24 * 20 - 1, 4)
    y, x = layout.origin(511)
    view.click_grid(x + 5, y + 5)
    assert view.unit == 511
