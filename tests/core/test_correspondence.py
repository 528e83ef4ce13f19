"""Correspondence Delta equals a brute-force Hamming computation; Shapes gives object boxes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from ipydeepvis.core.correspondence import boxes_to_masks, sign_hamming
from ipydeepvis.data import Shapes
from tests.nets import ConvReluPool, assert_same_state, model_state, seeded


def brute_delta(features: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                fill: torch.Tensor) -> float:
    """Occlude with a Python loop, sign of the feature change, Hamming over every pair."""
    with torch.no_grad():
        signs = []
        for image, mask, value in zip(images, masks, fill, strict=True):
            occluded = torch.where(mask, value[:, None, None], image)
            eps = (features(image[None]) - features(occluded[None])).flatten()
            signs.append(eps.sign().tolist())
    distances = [np.mean([a != b for a, b in zip(signs[i], signs[j], strict=True)])
                 for i, j in itertools.combinations(range(len(signs)), 2)]
    return float(np.mean(distances))


def test_sign_hamming_by_hand() -> None:
    signs = torch.tensor([[1, 0, -1, 1], [1, 1, -1, -1], [0, 0, 0, 0]], dtype=torch.int8)
    # pairs: (0, 1) differ at 2 of 4, (0, 2) at 3 of 4, (1, 2) at 4 of 4
    assert sign_hamming(signs) == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    assert sign_hamming(torch.ones(5, 7, dtype=torch.int8)) == 0.0


def test_a_part_seen_the_same_way_everywhere_has_delta_zero() -> None:
    # features = the image itself: occluding the same box with 0 in positive images changes
    # the same units the same way in every image; a box at random places does not
    model = nn.Sequential(nn.Identity(), nn.Flatten())
    images = torch.rand(4, 1, 10, 10, generator=seeded(1)) + 0.5
    boxes = torch.tensor([[2, 3, 6, 7]] * 4)
    result = dv.correspondence(model, images, {"box": boxes}, layers="0", n_random=3,
                               fill=0.0)
    assert result.delta["0"].tolist() == [0.0]
    assert (result.random["0"] > 0).all()
    assert result.masks["box"].sum() == 4 * 16
    random = result.random_masks["box"]
    assert random.shape == (3, 4, 10, 10) and (random.sum(axis=(2, 3)) == 16).all()
    for draw in random.reshape(-1, 10, 10):  # each still a 4 x 4 box
        ys, xs = np.nonzero(draw)
        assert ys.max() - ys.min() == 3 and xs.max() - xs.min() == 3


def test_delta_equals_brute_force_for_boxes_masks_and_random() -> None:
    body = nn.Sequential(*ConvReluPool(inplace=True, seed=2))
    images = torch.rand(3, 3, 12, 12, generator=seeded(3))
    boxes = torch.tensor([[0, 0, 4, 4], [2, 1, 6, 5], [6, 6, 10, 10]])
    blob = torch.zeros(3, 12, 12, dtype=torch.bool)
    blob[:, 5:9, 3:6] = True
    blob[0, 0, 0] = True  # not a box: moved as a whole with its bounding box
    result = dv.correspondence(body, images, {"corner": boxes, "blob": blob},
                               layers=["1", "4"], n_random=2, seed=7, batch_size=5)
    fill = images.mean(dim=(2, 3))
    masks = {"corner": boxes_to_masks(boxes, (12, 12)), "blob": blob}
    for p, part in enumerate(("corner", "blob")):
        assert np.array_equal(result.masks[part], masks[part].numpy())
        for name, depth in (("1", 2), ("4", 5)):
            expected = brute_delta(body[:depth], images, masks[part], fill)
            assert result.delta[name][p] == pytest.approx(expected, abs=1e-12)
            for r in range(2):
                moved = torch.from_numpy(result.random_masks[part][r])
                assert result.random[name][p, r] == pytest.approx(
                    brute_delta(body[:depth], images, moved, fill), abs=1e-12)
    rows = result.table()
    assert [row["part"] for row in rows] == ["corner", "blob"]
    assert rows[1]["4 random"] == pytest.approx(result.random["4"][1].mean())
    same = dv.correspondence(body, images, {"corner": boxes, "blob": blob},
                             layers=["1", "4"], n_random=2, seed=7, batch_size=64)
    assert all(np.array_equal(same.random_masks[k], result.random_masks[k]) for k in masks)
    np.testing.assert_allclose(same.random["4"], result.random["4"], atol=1e-12)
    other = dv.correspondence(body, images, {"corner": boxes}, layers="1", n_random=2, seed=8)
    assert not np.array_equal(other.random_masks["corner"], result.random_masks["corner"])


def test_callback_stop_leaves_nan() -> None:
    body = ConvReluPool(seed=0)
    images = torch.rand(3, 3, 12, 12, generator=seeded(0))
    boxes = torch.tensor([[0, 0, 4, 4]] * 3)
    calls = []
    result = dv.correspondence(body, images, {"a": boxes}, layers="1", n_random=2,
                               batch_size=4, callback=lambda d, t: calls.append((d, t)) or d < 4)
    assert calls == [(4, 9)] and result.done == 4 and result.total == 9
    assert not result.complete
    assert np.isfinite(result.delta["1"]).all()  # the part's 3 images were in the first batch
    assert np.isnan(result.random["1"]).all()


@pytest.mark.parametrize("training", [True, False])
def test_model_untouched_after_success_and_error(training: bool) -> None:
    model = ConvReluPool(inplace=True).train(training)
    model.register_forward_hook(lambda *a: None)
    before = model_state(model)
    images = torch.rand(2, 3, 12, 12)
    boxes = torch.tensor([[0, 0, 5, 5], [3, 3, 8, 8]])
    dv.correspondence(model, images, {"a": boxes}, layers=["0", "4"], n_random=1)
    assert_same_state(before, model)
    with pytest.raises(errors.InvalidOptionError):
        dv.correspondence(model, images, {"a": boxes[:1]}, layers="0")
    assert_same_state(before, model)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"parts": {"a": torch.tensor([[0, 0, 4, 4]])}}, errors.InvalidOptionError,
     r"part 'a' has shape \(1, 4\); expected 2 boxes"),
    ({"parts": {"a": torch.tensor([[0, 0, 13, 4], [0, 0, 4, 4]])}}, errors.InvalidOptionError,
     r"box \[0, 0, 13, 4\] \(image 0\) is not a non-empty"),
    ({"parts": {"a": torch.zeros(2, 12, 12)}}, errors.InvalidOptionError,
     r"part 'a' occludes nothing in image 0"),
    ({"parts": {}}, errors.InvalidOptionError, r"parts must be a non-empty mapping"),
    ({"layers": []}, errors.InvalidOptionError, r"layers is empty"),
    ({"n_random": -1}, errors.InvalidOptionError, r"n_random must be an int >= 0, got -1"),
    ({"layers": "x"}, errors.LayerNotFoundError, r"'x' is not a layer"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"parts": {"a": torch.tensor([[0, 0, 4, 4], [1, 1, 5, 5]])}, "layers": "1",
            **kwargs}
    parts = args.pop("parts")
    with pytest.raises(error, match=match):
        dv.correspondence(ConvReluPool(), torch.rand(2, 3, 12, 12), parts, **args)
    with pytest.raises(errors.InvalidInputError, match=r"at least 2 images, got 1"):
        dv.correspondence(ConvReluPool(), torch.rand(1, 3, 12, 12),
                          {"a": torch.tensor([[0, 0, 4, 4]])}, layers="1")


def test_shapes_boxes_are_tight_around_the_object_and_images_unchanged() -> None:
    ds = Shapes("test", 40, seed=0)
    images, _ = ds.batch(range(40))
    cover = ds.object_masks(range(40))
    boxes = ds.boxes(range(40))
    assert cover.shape == (40, 64, 64) and boxes.shape == (40, 4)
    assert float(cover.min()) == 0.0 and float(cover.max()) == 1.0
    for k in range(40):
        x0, y0, x1, y1 = boxes[k].tolist()
        inside = cover[k] >= 0.5
        assert inside.sum() == inside[y0:y1, x0:x1].sum() > 0  # every object pixel in the box
        assert inside[y0].any() and inside[y1 - 1].any()  # and the box is tight
        assert inside[:, x0].any() and inside[:, x1 - 1].any()
    assert torch.equal(ds.batch(range(40))[0], images)
