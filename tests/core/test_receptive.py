"""Receptive fields measured on the graph equal hand-computed ones, for branches too; the
top-k patches and projections are crops of the right images at those fields."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from ipydeepvis.core.receptive import Box, ReceptiveField, receptive_field
from ipydeepvis.core.topk import top_k
from ipydeepvis.core.topk_images import patches, projections
from tests.nets import ConvReluPool, FunctionalRelus, SharedRelu, assert_same_state, model_state


@pytest.mark.parametrize("make", [ConvReluPool, FunctionalRelus, SharedRelu])
def test_conv_stack_fields_by_hand(make: type[nn.Module]) -> None:
    # conv 3x3 pad 1 -> relu -> max-pool 2/2 -> conv 3x3 pad 1 -> relu -> max-pool 2/2, 16x16
    model = make(seed=1)
    before = model_state(model)
    names = {ConvReluPool: ("0", "2", "3", "5"), FunctionalRelus: ("conv1", "pool1", "conv2",
             "pool2"), SharedRelu: ("relu:1", "pool1", "relu:2", "pool2")}[make]
    fields = ReceptiveField(model, (3, 16, 16))
    conv1, pool1, conv2, pool2 = names
    assert fields.boxes(conv1, [(0, 0), (5, 5), (15, 15)]) == [
        Box(0, 0, 2, 2), Box(4, 4, 7, 7), Box(14, 14, 16, 16)]  # 3x3, clipped at the borders
    assert fields.box(pool1, (3, 3)) == Box(5, 5, 9, 9)  # conv rows 6..7 -> input 5..8
    assert fields.box(conv2, (2, 2)) == Box(1, 1, 9, 9)  # pool rows 1..3 -> conv 2..7
    assert fields.box(pool2, (1, 1)) == Box(1, 1, 11, 11)  # conv2 rows 2..3 -> input 1..10
    assert_same_state(before, model)


class Branches(nn.Module):
    """Inception-like: a 1x1 and a 5x5 branch concatenated, then a strided residual block
    whose shortcut is a 1x1 stride-2 conv and whose main path is two 3x3 convs (stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.narrow = nn.Conv2d(3, 2, 1)
        self.wide = nn.Conv2d(3, 2, 5, padding=2)
        self.main1 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.main2 = nn.Conv2d(4, 4, 3, padding=1)
        self.short = nn.Conv2d(4, 4, 1, stride=2)
        self.out = nn.Identity()
        with torch.no_grad():  # zero weights must not hide a path
            self.wide.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.relu(self.narrow(x)), F.relu(self.wide(x))], dim=1)
        return self.out(F.relu(self.main2(F.relu(self.main1(x))) + self.short(x)))


def test_branches_and_residuals_by_hand() -> None:
    fields = ReceptiveField(Branches(), (3, 20, 20))
    # concat of 1x1 and 5x5 branches: the union, 5x5
    assert fields.box("narrow", (10, 10)) == Box(10, 10, 11, 11)
    # main path at (5, 5): main2 rows 4..6 -> main1 rows 7..13 (stride 2) -> 5x5: 5..15;
    # the shortcut (1x1 stride 2) only adds row 10 -> 8..12: inside the main path's field
    assert fields.box("out", (5, 5)) == Box(5, 5, 16, 16)
    assert fields.box("short", (5, 5)) == Box(8, 8, 13, 13)
    assert fields.box("main1", (0, 0)) == Box(0, 0, 4, 4)  # rows -1..1 -> -3..3, clipped


def test_dilated_convolution_mask_and_bad_positions() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2))
    fields = ReceptiveField(model, (1, 9, 9))
    assert fields.box("0", (0, 0)) == Box(0, 0, 5, 5)
    mask = fields.mask("0", (0, 0))
    assert mask.sum() == 9 and mask[::2, ::2][:3, :3].all()  # 9 taps, 2 apart
    with pytest.raises(errors.PositionOutOfRangeError, match=r"\(5, 0\) is outside layer '0'"):
        fields.box("0", (5, 0))
    with pytest.raises(errors.LayerNotFoundError, match=r"'7' is not a layer"):
        fields.box("7", (0, 0))
    linear = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(98, 3))
    assert receptive_field(linear, "2", (), (1, 9, 9)) == Box(0, 0, 9, 9)


def test_union_and_seed_boxes() -> None:
    model = ConvReluPool(seed=1)
    fields = ReceptiveField(model, (3, 16, 16))
    # by hand: conv2 ("3") at row r sees input rows 2r - 3 .. 2r + 4 (clipped to 0..15)
    assert fields.boxes("3", [(1, 2), (4, 0)]) == [Box(0, 1, 7, 9), Box(5, 0, 13, 5)]
    assert fields.union_box("3", [(1, 2), (4, 0), (1, 2)]) == Box(0, 0, 13, 9)
    assert fields.union_box("3", [(2, 2)]) == fields.box("3", (2, 2))
    with pytest.raises(errors.InvalidInputError, match="positions is empty"):
        fields.union_box("3", [])
    unit_map = torch.zeros(8, 8)
    unit_map[1, 2], unit_map[4, 0], unit_map[3, 3] = 3.0, -1.0, 3.0  # a tie: the first wins
    assert fields.seed_box("3", unit_map, "max") == Box(0, 1, 7, 9)
    assert fields.seed_box("3", unit_map, (4, 0)) == Box(5, 0, 13, 5)
    # "all": the positions the seed keeps (not zero, negative ones too)
    assert fields.seed_box("3", unit_map, "all") == fields.union_box(
        "3", [(1, 2), (4, 0), (3, 3)]) == Box(0, 0, 13, 11)
    assert fields.seed_box("3", torch.zeros(8, 8), "all") == fields.box("3", (0, 0))
    with pytest.raises(errors.InvalidOptionError, match="'middle'"):
        fields.seed_box("3", unit_map, "middle")
    linear = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(98, 3))
    assert ReceptiveField(linear, (1, 9, 9)).seed_box("2", torch.tensor(0.5), "max") == Box(
        0, 0, 9, 9)


@pytest.mark.slow
def test_alexnet_fields() -> None:
    from torchvision.models import alexnet

    model = alexnet(weights=None)
    fields = ReceptiveField(model, (3, 224, 224))
    # conv5 (features.10): size (((3+2+2-1)*2+3+4-1)*2+3-1)*4+11 = 163, stride 16, start -66
    assert fields.boxes("features.10", [(6, 6), (0, 0), (12, 12)]) == [
        Box(30, 30, 193, 193), Box(0, 0, 97, 97), Box(126, 126, 224, 224)]
    assert fields.box("features.2", (10, 20)) == Box(78, 158, 97, 177)  # pool1: 19, stride 8


@pytest.mark.slow
def test_resnet18_fields() -> None:
    from torchvision.models import resnet18

    fields = ReceptiveField(resnet18(weights=None), (3, 224, 224))
    assert fields.box("conv1", (3, 3)) == Box(3, 3, 10, 10)  # 7x7 stride 2 pad 3
    assert fields.box("maxpool", (3, 3)) == Box(7, 7, 18, 18)  # 3x3/2 -> 11
    assert fields.box("layer1.0.relu:2", (5, 5)) == Box(7, 7, 34, 34)  # + two 3x3 at stride 4
    # the 1x1/2 shortcut of layer2 sees layer1's output: four 3x3 convs at stride 4 -> 43
    assert fields.box("layer2.0.downsample.0", (5, 5)) == Box(19, 19, 62, 62)
    assert fields.box("layer4.1.relu:2", (3, 3)) == Box(0, 0, 224, 224)  # 435 > the image


def test_patches_and_projections_are_crops_at_the_fields() -> None:
    model = ConvReluPool(seed=2)
    images = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    scan = top_k(model, images, "3", k=4)
    fields = ReceptiveField(model, (3, 16, 16))
    crops = patches(model, images, scan, 1, fields=fields)
    assert crops.entries == scan.entries(1)
    height = max(b.height for b in crops.boxes)
    width = max(b.width for b in crops.boxes)
    assert crops.images.shape == (4, 3, height, width)
    for image, box, entry in zip(crops.images, crops.boxes, crops.entries, strict=True):
        assert box == fields.box("3", entry.position)
        window = images[entry.index, :, box.top:box.bottom, box.left:box.right]
        top = height - box.height if box.top == 0 else 0  # clipped at the top: padded there
        left = width - box.width if box.left == 0 else 0
        assert torch.equal(image[:, top:top + box.height, left:left + box.width], window)
        rest = image.clone()
        rest[:, top:top + box.height, left:left + box.width] = 0
        assert not rest.any()  # zeros elsewhere
    probe = dv.Probe(model)
    projected = projections(probe, images, scan, 1)
    for image, box, entry in zip(projected.images, projected.boxes, projected.entries,
                                 strict=True):
        full = probe.project(images[entry.index], "3", 1, position=entry.position)[0]
        assert full[:, :box.top].abs().sum() == 0  # nothing outside the field
        assert full[:, box.bottom:].abs().sum() == 0
        window = full[:, box.top:box.bottom, box.left:box.right]
        top = image.shape[1] - box.height if box.top == 0 else 0
        left = image.shape[2] - box.width if box.left == 0 else 0
        assert torch.equal(image[:, top:top + box.height, left:left + box.width], window)
