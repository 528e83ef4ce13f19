"""Invariance curves equal distances computed by hand on independently transformed images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from ipydeepvis.core.invariance import default_values, transform_images
from tests.nets import ConvReluPool, SharedRelu, assert_same_state, model_state, seeded


def classifier(seed: int = 0, inplace: bool = False) -> nn.Sequential:
    net = nn.Sequential(*ConvReluPool(inplace=inplace, seed=seed), nn.Flatten(),
                        nn.Linear(5 * 3 * 3, 4))
    with torch.no_grad():
        net[-1].weight.copy_(torch.randn(4, 45, generator=seeded(seed + 1)))
    return net.eval()


def shifted_down(images: torch.Tensor, pixels: int, fill: torch.Tensor) -> torch.Tensor:
    """Move images down by ``pixels`` (up if negative), the uncovered rows ``fill`` (N, C)."""
    out = fill[:, :, None, None].expand_as(images).clone()
    if pixels >= 0:
        out[:, :, pixels:] = images[:, :, :images.shape[2] - pixels]
    else:
        out[:, :, :pixels] = images[:, :, -pixels:]
    return out


def test_translation_distances_and_probabilities_equal_hand_computation() -> None:
    model = classifier(seed=2)
    images = torch.rand(3, 3, 12, 12, generator=seeded(3))
    labels = [0, 3, 1]
    values = [-3, -1, 0, 2, 4]
    result = dv.invariance(model, images, transform="translate", values=values,
                           layers=["1", "6"], labels=labels, batch_size=4)
    assert result.layers == ("1", "6") and result.values.tolist() == values
    fill = images.mean(dim=(2, 3))
    with torch.no_grad():
        for v, pixels in enumerate(values):
            moved = shifted_down(images, pixels, fill)
            for name, depth in (("1", 2), ("6", 7)):
                expected = (model[:depth](moved) - model[:depth](images)).flatten(1).norm(dim=1)
                np.testing.assert_allclose(result.distance[name][:, v], expected, rtol=1e-5,
                                           atol=1e-5)
            probs = model(moved).softmax(1)
            np.testing.assert_allclose(result.probability[:, v], probs[[0, 1, 2], labels],
                                       atol=1e-6)
            assert result.predicted[:, v].tolist() == probs.argmax(1).tolist()
        norms = model[:2](images).flatten(1).norm(dim=1)
    assert (result.distance["1"][:, 2] == 0).all()  # the identity is exact
    np.testing.assert_allclose(result.norm["1"], norms, rtol=1e-6)
    np.testing.assert_allclose(result.base_probability, result.probability[:, 2], atol=1e-12)
    assert result.labels.tolist() == labels and result.complete


def test_rotation_by_quarter_turns_is_exact_and_labels_come_from_pairs() -> None:
    model = classifier(seed=4)
    images = torch.rand(2, 3, 12, 12, generator=seeded(5))
    pairs = [(images[0], 2), (images[1], 1)]
    result = dv.invariance(model, pairs, transform="rotate", values=[0, 90, 180],
                           layers="3")
    assert result.labels.tolist() == [2, 1]
    with torch.no_grad():
        for v, turns in enumerate((0, 1, 2)):
            turned = images.rot90(turns, dims=(2, 3))  # counter-clockwise, like torchvision
            expected = (model[:4](turned) - model[:4](images)).flatten(1).norm(dim=1)
            np.testing.assert_allclose(result.distance["3"][:, v], expected, rtol=1e-5,
                                       atol=1e-5)


def test_scale_and_default_labels_are_predictions() -> None:
    model = classifier(seed=6)
    images = torch.rand(2, 3, 12, 12, generator=seeded(7))
    result = dv.invariance(model, images, transform="scale", values=[1.0, 2.0], layers=[])
    assert result.labels.tolist() == model(images).argmax(1).tolist()
    assert result.distance == {} and np.isfinite(result.probability).all()
    flat = torch.full((1, 3, 12, 12), 0.75)
    torch.testing.assert_close(transform_images(flat, "scale", 2.0, fill=0.0), flat)
    shrunk = transform_images(flat, "scale", 0.5, fill=0.0)  # the border comes from outside
    assert (shrunk[:, :, 0] == 0).all() and (shrunk[:, :, 5:7, 5:7] == 0.75).all()


def test_transform_images_fill_and_identity() -> None:
    images = torch.rand(2, 3, 8, 8, generator=seeded(0))
    assert torch.equal(transform_images(images, "rotate", 0.0), images)
    assert torch.equal(transform_images(images, "translate", (0, 0)), images)
    down = transform_images(images, "translate", 3, fill=0.25)
    assert (down[:, :, :3] == 0.25).all() and torch.equal(down[:, :, 3:], images[:, :, :5])
    right = transform_images(images[0], "translate", (2, 0), fill=(0.0, 0.5, 1.0))
    assert right.shape == (3, 8, 8)
    assert right[:, :, :2].tolist() == [[[0.0] * 2] * 8, [[0.5] * 2] * 8, [[1.0] * 2] * 8]
    mean = transform_images(images, "translate", -2)  # "mean": each image its own fill
    torch.testing.assert_close(mean[:, :, -2:], images.mean(dim=(2, 3))[:, :, None, None]
                               .expand(2, 3, 2, 8))


class SharedReluClassifier(SharedRelu):
    def __init__(self) -> None:
        super().__init__(seed=1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(5 * 3 * 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(super().forward(x))


def test_reused_module_batches_callback_and_stop() -> None:
    model = SharedReluClassifier()
    images = torch.rand(4, 3, 12, 12, generator=seeded(2))
    one = dv.invariance(model, images, transform="translate", values=[-2, 0, 2],
                        layers=["relu:1", "relu:2"], batch_size=1)
    big = dv.invariance(model, images, transform="translate", values=[-2, 0, 2],
                        layers=["relu:1", "relu:2"], batch_size=64)
    for name in ("relu:1", "relu:2"):
        np.testing.assert_allclose(one.distance[name], big.distance[name], rtol=1e-5, atol=1e-5)
    assert not np.allclose(one.distance["relu:1"], one.distance["relu:2"])
    calls = []
    stopped = dv.invariance(model, images, transform="translate", values=[-2, 0, 2],
                            layers="relu:2", batch_size=4,
                            callback=lambda d, t: calls.append((d, t)) or d < 8)
    assert calls == [(4, 12), (8, 12)] and stopped.done == 8 and not stopped.complete
    assert np.isfinite(stopped.probability[:, :2]).all()
    assert np.isnan(stopped.probability[:, 2]).all()
    assert (stopped.predicted[:, 2] == -1).all()


def test_default_values_follow_the_paper_ranges() -> None:
    assert default_values("translate", 64).tolist() == list(range(-15, 16, 3))
    assert default_values("scale", 64)[[0, -1]].tolist() == [1.0, 1.8]
    assert default_values("rotate", 64).tolist() == list(range(0, 360, 10))
    images = torch.rand(1, 3, 12, 12)
    result = dv.invariance(classifier(), images, transform="rotate", layers="0")
    assert result.probability.shape == (1, 36)


@pytest.mark.parametrize("training", [True, False])
def test_model_untouched_after_success_and_error(training: bool) -> None:
    model = classifier(inplace=True).train(training)
    model.register_forward_pre_hook(lambda *a: None)
    before = model_state(model)
    images = torch.rand(2, 3, 12, 12)
    dv.invariance(model, images, transform="rotate", values=[0, 45], layers=["0", "3"])
    dv.invariance(dv.Probe(model), images, transform="scale", values=[1.5], layers="1")
    assert_same_state(before, model)
    with pytest.raises(errors.LayerNotFoundError):
        dv.invariance(model, images, transform="rotate", values=[0, 45], layers=["nope"])
    assert_same_state(before, model)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"transform": "shear"}, errors.InvalidOptionError,
     r"transform must be one of 'translate', 'scale', 'rotate', got 'shear'"),
    ({"values": []}, errors.InvalidOptionError, r"values must be a non-empty list"),
    ({"values": [1, float("nan")]}, errors.InvalidOptionError, r"finite numbers"),
    ({"transform": "scale", "values": [1, 0]}, errors.InvalidOptionError,
     r"scale values must be > 0"),
    ({"labels": [0]}, errors.InvalidOptionError, r"labels must be 2 class indices"),
    ({"labels": [0, 9]}, errors.UnitOutOfRangeError, r"label 9 is out of range.* 4 classes"),
    ({"fill": (0.5, 0.5)}, errors.InvalidOptionError, r"fill has 2 values .* 3 channel"),
    ({"layers": ["0", "0"]}, errors.InvalidOptionError, r"lists a layer twice"),
    ({"batch_size": -1}, errors.InvalidOptionError, r"batch_size must be a positive int"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"values": [0, 5], "layers": "0", **kwargs}
    with pytest.raises(error, match=match):
        dv.invariance(classifier(), torch.rand(2, 3, 12, 12), **args)


def test_bad_images() -> None:
    with pytest.raises(errors.InvalidInputError, match=r"images must all have one shape"):
        dv.invariance(classifier(), [torch.rand(3, 12, 12), torch.rand(3, 10, 10)], values=[0])
    with pytest.raises(errors.InvalidInputError, match=r"images must be a tensor .* got int"):
        dv.invariance(classifier(), 3, values=[0])
    with pytest.raises(errors.InvalidInputError, match=r"images is empty"):
        dv.invariance(classifier(), [], values=[0])
