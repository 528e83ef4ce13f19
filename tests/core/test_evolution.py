"""Feature evolution across epochs: argmax images, jumps, crops and weight change by hand."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from ipydeepvis import errors
from ipydeepvis.core.evolution import (
    conv_weight_keys,
    evolution_strip,
    nonfinite_report,
    relative_weight_change,
    support_box,
    weight_change_between,
)
from tests.nets import ConvReluPool


def epochs_of(model: torch.nn.Module, count: int) -> list[tuple[int, torch.nn.Module]]:
    """A pretend training run: each epoch adds a seeded perturbation to the weights."""
    out = []
    current = copy.deepcopy(model)
    g = torch.Generator().manual_seed(9)
    for epoch in range(1, count + 1):
        current = copy.deepcopy(current)
        with torch.no_grad():
            for p in current.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        out.append((epoch, current))
    return out


def test_strip_argmax_images_equal_a_brute_force_scan() -> None:
    models = epochs_of(ConvReluPool(pool=(3, 2), channels=(3, 4, 6), seed=1), 4)
    images = torch.rand(40, 3, 13, 13, generator=torch.Generator().manual_seed(2))
    strip = evolution_strip(models, images, "4", [0, 2, 5], probe_size=30, batch_size=8)
    assert strip.epochs == (1, 2, 3, 4) and strip.units == (0, 2, 5)
    for e, (_epoch, model) in enumerate(models):
        with torch.no_grad():
            to_relu2 = torch.nn.Sequential(*list(model.eval())[:5])
            acts = to_relu2(images[:30])  # (30, 6, 6, 6) up to the second ReLU
        per_image = acts.flatten(2).max(dim=2).values  # (30, 6)
        for u, unit in enumerate([0, 2, 5]):
            column = per_image[:, unit]
            first_best = int(torch.nonzero(column == column.max())[0])
            assert int(strip.indices[e, u]) == first_best
            assert float(strip.values[e, u]) == pytest.approx(float(column.max()))
    expected_changed = np.zeros((4, 3), bool)
    expected_changed[1:] = strip.indices[1:].numpy() != strip.indices[:-1].numpy()
    assert np.array_equal(strip.changed.numpy(), expected_changed)
    for e in range(4):
        for u in range(3):
            top, left, bottom, right = strip.boxes[e, u].tolist()
            assert strip.projections[e][u].shape[1:] == (bottom - top, right - left)
            image = images[int(strip.indices[e, u])]
            assert torch.equal(strip.patches[e][u], image[:, top:bottom, left:right])


def test_relative_weight_change_by_hand() -> None:
    a = {"w": torch.tensor([3.0, 4.0])}
    b = {"w": torch.tensor([3.0, 0.0])}
    c = {"w": torch.tensor([0.0, 0.0])}
    change = relative_weight_change([a, b, c], ["w"])
    assert change.tolist() == [[4.0 / 3.0], [math.inf]]  # all weights gone: not "no change"
    assert relative_weight_change([c, c], ["w"]).tolist() == [[0.0]]
    with pytest.raises(errors.InvalidOptionError, match="at least two saved epochs"):
        relative_weight_change([a], ["w"])
    assert conv_weight_keys(ConvReluPool()) == {"0": "0.weight", "3": "3.weight"}


def test_support_box_is_a_square_around_the_signal() -> None:
    p = torch.zeros(3, 20, 20)
    p[1, 5:9, 6:8] = 1.0
    assert support_box(p, minimum=4) == (5, 5, 9, 9)
    assert support_box(p, minimum=8) == (3, 3, 11, 11)
    assert support_box(torch.zeros(1, 5, 6)) == (0, 0, 5, 6)
    q = torch.zeros(1, 10, 10)
    q[0, 0, 9] = 1.0
    assert support_box(q, minimum=4) == (0, 6, 4, 10)  # pushed inside the image


def test_nonfinite_weights_give_nan_change_not_zero() -> None:
    """Bug 6: a diverged epoch's weight change is unknown (NaN), before and after it."""
    good = {"w": torch.tensor([3.0, 4.0])}
    nan = {"w": torch.tensor([float("nan"), 4.0])}
    inf = {"w": torch.tensor([float("inf"), 0.0])}
    change = relative_weight_change([good, nan, good, inf], ["w"])
    assert all(math.isnan(v) for v in change.flatten().tolist())
    assert weight_change_between(good["w"], good["w"] * 2) == pytest.approx(0.5)
    assert nonfinite_report(good) == ""
    report = nonfinite_report({"a.weight": torch.tensor([1.0, float("nan"), float("inf")]),
                               "a.bias": torch.ones(2), "steps": torch.tensor(3)})
    assert report == "non-finite weights in a.weight (2 of 3 values)"


def test_support_box_of_a_nan_projection_is_the_whole_image() -> None:
    p = torch.full((3, 6, 7), float("nan"))
    assert support_box(p) == (0, 0, 6, 7)
