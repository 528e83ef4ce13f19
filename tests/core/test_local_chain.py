"""The windowed chain computes what the plain forward computes, for every layer geometry."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.local_chain import ChangedBoxes, install_local_chain
from tests.nets import seeded


class Scale(nn.Module):
    """A module the chain does not know (so it must stop, or not start, there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def alexnet_like() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 6, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(6, 8, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.LazyLinear(5))


def odd_geometry() -> nn.Sequential:
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5, generator=seeded(1))
        bn.running_var.uniform_(0.5, 2.0, generator=seeded(2))
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=2, dilation=2), bn, nn.LeakyReLU(0.1),
        nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(6, 6, 5, stride=3, padding=2),
        nn.AvgPool2d(2, 2), nn.Conv2d(6, 4, 1, stride=2), nn.Tanh(),
        nn.Flatten(), nn.LazyLinear(3))


def leading_unknown() -> nn.Sequential:
    return nn.Sequential(Scale(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))


def stops_in_the_middle() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Scale(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.LazyLinear(2))


class SkipConnection(nn.Module):
    """conv1 -> conv2 is a chain, but conv1's output is also added to the result."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv1(x)
        return self.head(self.conv2(first) + first)


class ReusedConv(nn.Module):
    """The first conv is called again later: its stand-in would answer that call wrongly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.pool(self.conv(x))))


def prepared(make: object, size: int) -> nn.Module:
    torch.manual_seed(0)
    model = make().eval()  # type: ignore[operator]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))  # materialise the lazy layer
    return model


@pytest.mark.parametrize(("make", "size", "patch", "replaced"), [
    (alexnet_like, 67, 17, 6),
    (odd_geometry, 40, 9, 7),  # all but the trailing Tanh (a pointwise tail gains nothing)
    (odd_geometry, 40, 3, 7),
    (leading_unknown, 12, 4, 0),
    (stops_in_the_middle, 12, 4, 1),  # the ReLU tail after the first conv gains nothing
    (SkipConnection, 12, 4, 1),  # the check against the plain model cuts it after conv1
    (ReusedConv, 12, 4, 0),
])
def test_windowed_chain_equals_plain_forward(make: object, size: int, patch: int,
                                             replaced: int) -> None:
    model = prepared(make, size)
    image = torch.rand(1, 3, size, size, generator=seeded(3))
    shadow = copy.deepcopy(model)
    boxes = ChangedBoxes()
    names = install_local_chain(shadow, image, boxes)
    assert len(names) == replaced
    g = seeded(4)
    top = torch.cat([torch.tensor([0, size - patch, size - 1]),
                     torch.randint(0, size, (9,), generator=g)])
    left = torch.cat([torch.tensor([size - patch, 0, size - 1]),
                      torch.randint(0, size, (9,), generator=g)])
    batch = image.expand(12, -1, -1, -1).clone()
    for k in range(12):
        batch[k, :, top[k]:top[k] + patch, left[k]:left[k] + patch] = torch.rand(
            3, min(patch, size - int(top[k])), min(patch, size - int(left[k])), generator=g)
    with torch.no_grad():
        expected = model(batch)
        boxes.set(top, left, patch, patch, (size, size))
        got = shadow(batch.clone())
        boxes.clear()
        plain = shadow(batch.clone())  # boxes clear: the chain runs as usual
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-5)


def test_chain_stops_at_the_layer_read_and_model_untouched() -> None:
    model = prepared(alexnet_like, 67)
    shadow = copy.deepcopy(model)
    names = install_local_chain(shadow, torch.rand(1, 3, 67, 67), ChangedBoxes(), last="3")
    assert names == ["0", "1", "2", "3"]
    assert all(type(m).__name__ != "_LocalChain" for m in model.modules())


@pytest.mark.parametrize("make", [alexnet_like, odd_geometry])
def test_occlusion_local_equals_plain(make: object) -> None:
    model = prepared(make, 40)
    image = torch.rand(3, 40, 40, generator=seeded(5))
    local = dv.occlusion(model, image, target=1, patch=10, stride=3, batch_size=16)
    plain = dv.occlusion(model, image, target=1, patch=10, stride=3, batch_size=16,
                         local=False)
    np.testing.assert_allclose(local.probability, plain.probability, atol=1e-6)
    assert np.array_equal(local.label, plain.label)
    unit_local = dv.occlusion(model, image, target=("3", "max"), patch=10, stride=3)
    unit_plain = dv.occlusion(model, image, target=("3", "max"), patch=10, stride=3,
                              local=False)
    assert unit_local.target == unit_plain.target
    np.testing.assert_allclose(unit_local.activation, unit_plain.activation, rtol=1e-5,
                               atol=1e-4)


@pytest.mark.slow
def test_resnet_stem_is_windowed_and_answers_like_the_plain_model() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    image = torch.rand(3, 48, 48, generator=seeded(6))
    names = install_local_chain(copy.deepcopy(model), image[None], ChangedBoxes())
    assert names == ["conv1", "bn1", "relu", "maxpool"]  # layer1's skip reads maxpool's output
    local = dv.occlusion(model, image, target=2, patch=16, stride=16)
    plain = dv.occlusion(model, image, target=2, patch=16, stride=16, local=False)
    np.testing.assert_allclose(local.probability, plain.probability, atol=1e-6)
