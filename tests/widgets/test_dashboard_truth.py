"""The dashboard tells the truth (issue 12, items 5, 6, 9, 10, 15, 16), headless.

Silent units are not projected as if they meant something; the three methods are said to
coincide exactly where they do; the enlarged unit is scaled per unit and marks its seed; logits
carry class names; uploads keep their proportions; saved pictures carry their labels; the
quickstart opens on an image the model is sure about.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from traitlets import TraitError

import ipydeepvis as dv
from ipydeepvis import render
from tests.nets import Classifier, ConvReluPool, FunctionalRelus, SharedRelu, seeded

REPO = Path(__file__).resolve().parents[2]
PANE = 192


def images(count: int = 3, channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(count, channels, size, size, generator=seeded(0))


def make(model: nn.Module, pictures: torch.Tensor, **kw: object) -> dv.DeepVis:
    return dv.DeepVis(model, pictures, threaded=False, **kw)


def silent_unit_net() -> nn.Sequential:
    """conv (unit 0 is the constant -0.84, unit 1 copies the input) -> ReLU -> conv."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1))
        net[0].bias.copy_(torch.tensor([-0.84, 0.0]))
        net[2].weight.copy_(torch.randn(2, 2, 3, 3, generator=seeded(3)))
        net[2].bias.zero_()
    return net


def projection_note(view: dv.DeepVis) -> str:
    return view.panes["projection"].text.value  # type: ignore[attr-defined, no-any-return]


# ------------------------------------------------------------------ 5: silent units, one method


def test_a_unit_that_never_fires_is_not_projected() -> None:
    view = make(silent_unit_net(), images(2, channels=1, size=6))
    view.layer, view.unit = "0", 0
    assert "unit 0 is not active on this image: max -0.84" in projection_note(view)
    neutral = np.full((PANE, PANE, 4), 128, np.uint8)
    neutral[..., 3] = 255
    assert np.array_equal(view.frames["projection"], neutral)  # nothing that looks like signal
    assert "not active" in view._status.value
    view.unit = 1  # the live unit is projected again, and the note goes
    assert "not active" not in projection_note(view)
    assert not np.array_equal(view.frames["projection"], neutral)


def test_a_clicked_cell_that_does_not_fire_is_not_projected() -> None:
    net, pictures = silent_unit_net(), images(2, channels=1, size=6)
    view = make(net, pictures)
    maps = dv.Probe(net).activations(pictures[0], ["2"])["2"][0]
    view.layer, view.unit = "2", 0
    dead = [(i, j) for i in range(6) for j in range(6) if float(maps[0, i, j]) <= 0]
    assert dead, "the seeded net should have a cell <= 0 on unit 0 of layer '2'"
    i, j = dead[0]
    view.click_unit_map((j + 0.5) * PANE / 6, (i + 0.5) * PANE / 6)
    note = projection_note(view)
    assert f"unit 0 is not active at ({i}, {j}): {float(maps[0, i, j]):.3g}" in note, note
    assert (view.frames["projection"][..., :3] == 128).all()


@pytest.mark.parametrize(("net", "coincide"), [
    (ConvReluPool(seed=2), {"0", "1"}),  # the ReLU of layer 1 itself passes its seed as is
    (SharedRelu(seed=2), {"conv1", "relu:1"}),
    (FunctionalRelus(seed=2), {"conv1", "conv1.relu"}),  # F.relu calls are layers too
])
def test_the_pane_says_the_methods_coincide_exactly_where_they_do(net: nn.Module,
                                                                  coincide: set[str]) -> None:
    pictures = images(1, size=8)
    view = make(net, pictures)
    probe = dv.Probe(net)
    for layer in view._layers:
        maps = probe.activations(pictures[0], [layer])[layer][0]
        unit = int(maps.flatten(1).max(1).values.argmax())
        view.layer, view.unit = layer, unit
        claimed = "give the same picture here" in projection_note(view)
        assert claimed == (layer in coincide), (layer, projection_note(view))
        results = [probe.project(pictures[0], layer, unit, method=m)[0]
                   for m in ("deconvnet", "guided", "gradient")]
        same = all(torch.equal(results[0], r) for r in results[1:])
        if claimed:  # the claim is true, exactly
            assert same, layer
        elif layer in {"3", "conv2", "4", "relu:2", "5", "pool2"}:
            assert not same, layer  # and above a ReLU the buttons do change the picture


# ------------------------------------------------------------------ 6: per-unit scale, marker


def test_the_enlarged_unit_is_scaled_to_itself_and_marks_its_seed() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures, classes=list("abcde"))
    maps = view.probe.activations(pictures[0], ["features.3"])["features.3"][0]
    peaks = maps.flatten(1).max(1).values
    unit = int((peaks == peaks[peaks > 0].min()).nonzero()[0])  # the weakest unit that fires
    view.unit = unit
    assert view.unit_scale == "unit"
    frame = view.frames["unit"]
    assert np.array_equal(frame, render.unit_map_rgba(maps[unit], PANE, float(peaks[unit])))
    assert frame[..., 0].max() == 255  # the weak unit's pattern uses the whole grey range
    at = divmod(int(maps[unit].flatten().argmax()), 8)
    assert view._unit_canvas.highlight_box == render.cell_box(at, (8, 8), PANE) == (
        at[1] * 24, at[0] * 24, 24, 24)

    forwards = model.forwards
    view.unit_scale = "layer"  # display only: no model work
    top = float(maps.clamp(min=0).max())
    assert np.array_equal(view.frames["unit"], render.unit_map_rgba(maps[unit], PANE, top))
    assert view.frames["unit"][..., 0].max() < 255
    assert model.forwards == forwards

    sent = view._unit_canvas.sent_frames, view._grid_canvas.sent_frames
    view.click_unit_map(191, 0)  # the marker follows the clicked seed; no picture is re-sent
    assert view._unit_canvas.highlight_box == (168, 0, 24, 24)
    assert (view._unit_canvas.sent_frames, view._grid_canvas.sent_frames) == sent
    view.position = "max"
    assert view._unit_canvas.highlight_box == (at[1] * 24, at[0] * 24, 24, 24)
    with pytest.raises(TraitError, match=r"unit_scale must be one of 'unit', 'layer', got 'x'"):
        view.unit_scale = "x"


# ------------------------------------------------------------------ 9: class names, weights note


def test_logits_are_named_by_class_and_their_readout_has_no_position() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures, classes=["circle", "square", "cat", "stripes", "dots"])
    view.layer, view.unit = "fc", 2
    logit = float(model.eval()(pictures[:1])[0, 2])
    label = view.panes["grid"].label.value  # type: ignore[attr-defined]
    assert label.startswith(f"unit <b>2</b> (cat) of 5: {logit:.3g}"), label
    assert "at ()" not in label and " at " not in label
    assert view.labels()["unit"] == "2 (cat)"
    view.layer = "features.3"  # other layers have no class names
    assert "(cat)" not in view.panes["grid"].label.value  # type: ignore[attr-defined]


def test_a_weights_note_stands_above_the_predictions() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures, classes=list("abcde"), weights_note="untrained <weights>")
    html = view._predictions.value
    assert html.startswith("<div class='e2e-weights-note deepvis-warn'>"
                           "untrained &lt;weights&gt;</div>"), html
    assert html.index("weights") < html.index("<table>")
    view.weights_note = ""
    assert "e2e-weights-note" not in view._predictions.value
    assert "weights-note" not in make(model, pictures, classes=list("abcde"))._predictions.value


# ------------------------------------------------------------------ 10: uploads keep proportions


def upload(view: dv.DeepVis, picture: Image.Image) -> None:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    view._uploaded({"new": [{"content": memoryview(buffer.getvalue()), "name": "x.png"}]})


@pytest.mark.parametrize("size", [(40, 30), (30, 40), (16, 16), (8, 8), (17, 99)])
def test_uploads_are_resized_by_the_short_side_and_centre_cropped(size: tuple[int, int]) -> None:
    view = make(Classifier(), images())
    rng = np.random.default_rng(sum(size))
    picture = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), np.uint8), "RGBA")
    upload(view, picture)
    expected = TF.center_crop(TF.resize(picture.convert("RGB"), 16), [16, 16])  # torchvision
    want = torch.from_numpy(np.asarray(expected, np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(view._images[-1], want)
    notice = view._notice.value
    w, h = size
    line = {(16, 16): "upload 16×16, as is"}.get(size, f"upload {w}×{h} → 16×16" + (
        ", centre crop" if w != h else ""))
    assert notice.startswith("<div class='deepvis-notice' title='uploaded image (converted "
                             "from RGBA to RGB") and notice.endswith(f"'>{line}</div>"), notice


def test_an_uploaded_circle_stays_round() -> None:
    view = make(Classifier(), images())
    picture = Image.new("RGB", (64, 32), "black")  # a wide picture with a circle in the middle
    picture.paste((255, 0, 0), (20, 4, 44, 28))  # a 24 px square ...
    upload(view, picture)
    red = (view._images[-1][0] > 0.5).numpy()
    rows, cols = red.any(1).sum(), red.any(0).sum()
    assert rows == cols == 12  # ... is still a square (stretching made it 6 wide, 12 tall)


# ------------------------------------------------------------------ 15: labelled pictures


def test_save_png_writes_labels_and_the_highlights(tmp_path: Path) -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures, classes=["circle", "square", "cat", "stripes", "dots"])
    view.unit, view.method = 5, "guided"
    view.click_unit_map(30, 100)
    saved = Image.open(view.save_png(tmp_path / "view.png"))
    # conv2 at row 4, column 1 sees input rows 5..12, columns -1..6 (clipped: 0..6)
    assert saved.text == {"layer": "features.3", "unit": "5", "epoch": "as given",
                          "method": "guided", "seed": "clicked (4, 1)",
                          "field": "rows 5..12, columns 0..6 of 16x16"}
    sheet = np.asarray(saved)
    line = render.FONT_SIZE + 6  # one line of text
    assert render.FONT_SIZE >= 13  # readable
    title = sheet[:line]
    assert (title[..., :3] < 100).any(axis=2).sum() > 100  # text is written there
    frames, x = view.frames, 0
    grid_box, unit_box = view._grid_canvas.highlight_box, view._unit_canvas.highlight_box
    field_box = view._input_canvas.highlight_box
    assert field_box == (0, 60, 84, 96)  # rows 5..12 and columns 0..6 of 16, at 12 px each

    def on_white(frame: np.ndarray) -> np.ndarray:  # a crop's transparent margin
        return np.where(frame[..., 3:] == 0, np.uint8(255), frame)

    assert (frames["projection"][..., 3] == 0).any()  # 8 x 7: a margin beside the crop
    expected = [render.outline(frames["input"], field_box, (0, 229, 255)),
                render.outline(frames["grid"], grid_box),
                render.outline(frames["unit"], unit_box, (0, 229, 255)),
                on_white(frames["projection"]), on_white(frames["patch"])]
    for frame in expected:
        height, width = frame.shape[:2]
        assert (sheet[line:2 * line, x:x + width, :3] < 100).any()  # a caption above
        assert np.array_equal(sheet[2 * line:2 * line + height, x:x + width], frame), x
        x += width + 8
    gx, gy, _, _ = grid_box
    assert sheet[2 * line + gy + 5, PANE + 8 + gx].tolist() == [255, 204, 0, 255]


# ------------------------------------------------------------------ 16: a confident first image


def test_the_quickstart_opens_on_an_image_the_model_is_sure_about() -> None:
    demo = dv.demo.load()
    index = demo.confident_index()
    pictures = torch.stack([demo.dataset[i][0] for i in range(16)])
    labels = [demo.dataset[i][1] for i in range(16)]
    with torch.no_grad():
        p = demo.model(pictures).softmax(1)
    sure = [i for i in range(16) if float(p[i].max()) >= 0.9 and int(p[i].argmax()) == labels[i]]
    assert index == sure[0]
    assert float(p[0].max()) < 0.9  # image 0 is the near tie the quickstart used to open on
    cells = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())["cells"]
    first = "".join(next(c["source"] for c in cells if c["cell_type"] == "code"))
    assert "view.image_index = demo.confident_index()" in first


# ------------------------------------------------------------------ 14: theme-neutral pictures


def test_thumbnails_leave_the_page_background_between_them() -> None:
    pictures = images(7)
    view = make(Classifier(), pictures)
    sheet = view.frames["thumbnails"]
    assert sheet.shape == (2 * 33 - 1, 5 * 33 - 1, 4)  # rows of 5, the last one has 2
    assert (sheet[:, 32, 3] == 0).all() and (sheet[32, :, 3] == 0).all()  # the 1 px gaps
    assert (sheet[33:, 2 * 33:, 3] == 0).all()  # no block where there is no image
    tile = render.to_rgba(render.resize_nearest(render.image_to_uint8(pictures[6]), 32, 32))
    assert np.array_equal(sheet[33:, 33:65], tile)
