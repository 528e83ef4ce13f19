"""The projection cropped to the receptive field (issue 12, item 7), headless.

With ``crop`` on (the default) the projection pane shows the full projection's picture cropped
to core.receptive's field of the seed and enlarged, the input patch under the same box beside
it, and the field outlined on the input pane; off, the old whole-image picture. Expected frames
come from tests/widgets/field_oracle.py (literal NumPy on the field core.receptive measures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.core.receptive import Box
from tests.nets import Classifier, seeded
from tests.widgets.field_oracle import (
    FIELD_COLOR,
    cropped_pair,
    field_frame,
    input_ring,
    seed_field,
)

PANE = 192


def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=seeded(0))


def make(model: nn.Module, pictures: torch.Tensor, **kw: object) -> dv.DeepVis:
    return dv.DeepVis(model, pictures, threaded=False, **kw)


def full_frame(projection: torch.Tensor) -> np.ndarray:
    return render.to_rgba(render.resize_nearest(render.projection_picture(projection), PANE,
                                                PANE))


def test_crop_is_the_full_picture_under_the_field_with_the_patch_and_the_outline() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures)
    assert view.crop is True
    view.layer, view.unit = "features.0", 2  # conv1: a 3 x 3 field
    projection = dv.Probe(model).project(pictures[0], "features.0", 2)[0]
    box = seed_field(model, pictures[0], "features.0", 2, "max")
    assert (box.height, box.width) == (3, 3)
    cropped, patch = cropped_pair(projection, pictures[0], box)
    assert np.array_equal(view.frames["projection"], cropped)
    assert np.array_equal(view.frames["patch"], patch)
    # the crop is the full-resolution picture itself: 94 px of 3 input pixels, 31 or 32 each
    picture = render.projection_picture(projection)
    assert view.frames["projection"][0, 0, :3].tolist() == picture[box.top, box.left].tolist()
    assert view.frames["projection"][93, 93, :3].tolist() == picture[box.bottom - 1,
                                                                     box.right - 1].tolist()
    image = render.image_to_uint8(pictures[0])
    assert view.frames["patch"][50, 0, :3].tolist() == image[box.top + 1, box.left].tolist()
    # the field on the input: 12 canvas px per input px
    ring = view._input_canvas.highlight_box
    assert ring == input_ring(box, (16, 16)) == (12 * box.left, 12 * box.top, 36, 36)
    assert view._input_canvas.highlight_color == "#00e5ff"
    assert "receptive field: rows" in view.panes["projection"].text.value  # type: ignore[attr-defined]

    # off: the old picture, no patch, no outline; a display-only change (no projection)
    sent = view._projection_canvas.sent_frames
    view.crop = False
    assert "display only" in view._status.value
    assert np.array_equal(view.frames["projection"], full_frame(projection))
    assert view.frames["patch"] is None and view._input_canvas.highlight_box is None
    assert view.panes["projection"].field.patch.layout.display == "none"  # type: ignore[attr-defined]
    assert view._projection_canvas.sent_frames == sent + 1
    view.crop = True
    assert np.array_equal(view.frames["projection"], cropped)
    assert view._input_canvas.highlight_box == ring
    patch_canvas = view.panes["projection"].field.patch  # type: ignore[attr-defined]
    sent = patch_canvas.sent_frames
    view.contrast = 2.0  # the same field of the same image: the patch is not re-sent
    assert patch_canvas.sent_frames == sent
    assert not np.array_equal(view.frames["projection"], cropped)


def test_a_field_clipped_by_the_border_keeps_its_proportions() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures)
    view.unit = 3  # active at (0, 7) and (0, 4)
    view.click_unit_map(191, 0)  # conv2 (0, 7): rows -3..4, columns 11..18 -> 0..4, 11..15
    box = seed_field(model, pictures[0], "features.3", 3, (0, 7))
    assert box == Box(0, 11, 5, 16)
    projection = dv.Probe(model).project(pictures[0], "features.3", 3, position=(0, 7))[0]
    cropped, patch = cropped_pair(projection, pictures[0], box)
    assert np.array_equal(view.frames["projection"], cropped)
    assert np.array_equal(view.frames["patch"], patch)
    assert (view.frames["patch"][..., 3] == 255).all()  # 5 x 5 (a corner): fills the square
    view.click_unit_map(96, 0)  # (0, 4): rows 0..4, columns 5..12: 5 x 8, clipped on top
    box = seed_field(model, pictures[0], "features.3", 3, (0, 4))
    assert box == Box(0, 5, 5, 13)
    patch = view.frames["patch"]
    assert np.array_equal(patch, field_frame(render.image_to_uint8(pictures[0]), box))
    filled = np.nonzero(patch[:, 0, 3])[0]  # 5 rows of 8 at 94 px: 59 rows, at the bottom
    assert (filled[0], filled[-1]) == (94 - 59, 93)
    assert view._input_canvas.highlight_box == (60, 0, 96, 60)


def test_seed_all_crops_to_the_union_of_the_fields_it_keeps() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures)
    view.layer, view.unit, view.position = "features.4", 10, "all"  # conv2 after its ReLU
    unit_map = dv.Probe(model).activations(pictures[0], ["features.4"])["features.4"][0][10]
    kept = unit_map.nonzero().tolist()
    assert 0 < len(kept) < unit_map.numel()  # some positions contribute, some do not
    box = seed_field(model, pictures[0], "features.4", 10, "all")
    assert box != Box(0, 0, 16, 16)
    projection = dv.Probe(model).project(pictures[0], "features.4", 10, position="all")[0]
    assert np.array_equal(view.frames["projection"], cropped_pair(projection, pictures[0],
                                                                  box)[0])
    outside = torch.ones(16, 16, dtype=torch.bool)  # the projection is zero outside the box
    outside[box.top:box.bottom, box.left:box.right] = False
    assert projection[:, outside].abs().max() == 0


def test_a_fully_connected_unit_sees_the_whole_image() -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures)
    view.layer, view.unit = "fc", 3
    projection = dv.Probe(model).project(pictures[0], "fc", 3)[0]
    whole = Box(0, 0, 16, 16)
    assert np.array_equal(view.frames["projection"], cropped_pair(projection, pictures[0],
                                                                  whole)[0])
    assert np.array_equal(view.frames["patch"], field_frame(render.image_to_uint8(pictures[0]),
                                                            whole))
    assert view._input_canvas.highlight_box is None  # nothing to outline
    assert "receptive field: the whole image" in view.panes["projection"].text.value  # type: ignore[attr-defined]


def test_a_resizing_preprocess_maps_the_field_to_the_shown_image() -> None:
    model = Classifier()
    pictures = torch.rand(1, 3, 8, 8, generator=seeded(2))  # shown at 8 x 8, seen at 16 x 16

    def upsample(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x[None], size=(16, 16), mode="nearest")[0]

    view = make(model, pictures, preprocess=upsample)
    view.layer, view.unit = "features.0", 5
    seen = upsample(pictures[0])
    box = seed_field(model, seen, "features.0", 5, "max")
    shown = Box(box.top // 2, box.left // 2, -(-box.bottom // 2), -(-box.right // 2))
    assert np.array_equal(view.frames["patch"],
                          field_frame(render.image_to_uint8(pictures[0]), shown))
    assert view._input_canvas.highlight_box == input_ring(shown, (8, 8))


def test_silent_units_are_not_cropped(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1))
        net[0].bias.copy_(torch.tensor([-0.84, 0.0]))
    view = make(net, torch.rand(1, 1, 8, 8, generator=seeded(1)))
    view.layer, view.unit = "0", 0  # the constant -0.84: nothing to project
    assert (view.frames["projection"][..., :3] == 128).all()
    assert view.frames["projection"].shape == (PANE, PANE, 4)
    assert view.frames["patch"] is None and view._input_canvas.highlight_box is None
    saved = Image.open(view.save_png(tmp_path / "silent.png"))
    assert "field" not in saved.text


def test_save_png_shows_the_crop_the_patch_and_the_outline(tmp_path: Path) -> None:
    model, pictures = Classifier(), images()
    view = make(model, pictures)
    view.layer, view.unit = "features.0", 2
    box = seed_field(model, pictures[0], "features.0", 2, "max")
    saved = Image.open(view.save_png(tmp_path / "crop.png"))
    assert saved.text["field"] == (f"rows {box.top}..{box.bottom - 1}, columns "
                                   f"{box.left}..{box.right - 1} of 16x16")
    sheet = np.asarray(saved)
    top = 2 * (render.FONT_SIZE + 6)
    ring = input_ring(box, (16, 16))
    assert ring is not None
    assert np.array_equal(sheet[top:top + PANE, :PANE],
                          render.outline(view.frames["input"], ring, FIELD_COLOR))
    cropped, patch = view.frames["projection"], view.frames["patch"]
    width = sheet.shape[1]
    assert np.array_equal(sheet[top:top + 94, width - 94:], patch)
    assert np.array_equal(sheet[top:top + 94, width - 94 - 8 - 94:width - 94 - 8], cropped)


def test_close_releases_the_measured_fields() -> None:
    view = make(Classifier(), images())
    field = view.panes["projection"].field  # type: ignore[attr-defined]
    assert field._fields is not None and field._fields._graph is not None  # the recorded pass
    view.close()
    assert field._fields is None
