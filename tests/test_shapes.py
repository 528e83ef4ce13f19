"""The procedural Shapes data set: determinism, disjoint splits, balance, shapes and speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from ipydeepvis.data import CLASSES, Shapes, ShapesConfig
from ipydeepvis.errors import InvalidOptionError


def test_item_is_float_image_in_unit_range_with_int_label() -> None:
    ds = Shapes("train", 50, seed=0)
    image, label = ds[3]
    assert image.shape == (3, 64, 64)
    assert image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < len(CLASSES)
    images, labels = ds.batch(range(50))
    assert images.shape == (50, 3, 64, 64) and labels.dtype == torch.int64
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.isfinite(images).all()


def test_classes_cover_edges_colour_texture_and_parts() -> None:
    ds = Shapes("test", 10)
    assert len(ds.classes) >= 10 and len(set(ds.classes)) == len(ds.classes)
    for name in ("circle", "square", "triangle", "cross", "ring", "star", "checkerboard", "dots"):
        assert name in ds.classes
    assert {"horizontal stripes", "vertical stripes", "diagonal stripes"} <= set(ds.classes)
    assert ds.class_to_idx["circle"] == ds.classes.index("circle")
    assert ds.num_classes == len(CLASSES)


def test_same_seed_split_index_gives_identical_tensor() -> None:
    a, la = Shapes("val", 100, seed=7)[42]
    b, lb = Shapes("val", 500, seed=7)[42]  # length does not change image 42
    assert torch.equal(a, b) and la == lb
    batch, labels = Shapes("val", 100, seed=7).batch([41, 42, 43])
    assert torch.equal(batch[1], a) and int(labels[1]) == la


def test_batch_rendering_equals_one_by_one() -> None:
    ds = Shapes("train", 64, seed=3)
    batch, labels = ds.batch(range(64))
    for i in range(0, 64, 7):
        image, label = ds[i]
        assert torch.equal(image, batch[i]) and label == int(labels[i])


def test_splits_and_seeds_differ() -> None:
    train = Shapes("train", 200, seed=0).batch(range(200))[0]
    val = Shapes("val", 200, seed=0).batch(range(200))[0]
    test = Shapes("test", 200, seed=0).batch(range(200))[0]
    other_seed = Shapes("train", 200, seed=1).batch(range(200))[0]
    for other in (val, test, other_seed):
        # No image of one is close to any image of the other (smallest pairwise L2 distance;
        # two renderings of one image would be at 0, two different images are at about 20).
        dist = torch.cdist(train.flatten(1), other.flatten(1))
        assert float(dist.min()) > 5.0


def test_split_keys_are_disjoint_by_construction() -> None:
    idx = np.arange(20_000, dtype=np.uint64)
    keys = [Shapes(split, 20_000, seed=s)._keys(idx) for split in ("train", "val", "test")
            for s in (0, 1)]  # fmt: skip
    all_keys = np.concatenate(keys)
    assert len(np.unique(all_keys)) == len(all_keys) == 6 * 20_000


def test_classes_are_balanced() -> None:
    labels = Shapes("train", 11 * 300, seed=0).labels
    counts = torch.bincount(labels, minlength=len(CLASSES))
    assert counts.tolist() == [300] * len(CLASSES)
    # ... and not in a fixed cycle: consecutive blocks use different class orders.
    blocks = labels.view(300, len(CLASSES))
    assert len({tuple(b.tolist()) for b in blocks}) > 250


@settings(max_examples=25, deadline=None)
@given(length=st.integers(0, 5000), seed=st.integers(0, 2**32 - 1))
def test_any_length_is_balanced_within_one(length: int, seed: int) -> None:
    counts = torch.bincount(Shapes("test", length, seed=seed).labels, minlength=len(CLASSES))
    assert int(counts.max() - counts.min()) <= 1
    assert int(counts.sum()) == length


def test_labels_property_matches_rendered_labels() -> None:
    ds = Shapes("val", 97, seed=5)
    assert torch.equal(ds.labels, ds.batch(range(97))[1])


def test_image_size_is_configurable() -> None:
    image, _ = Shapes("train", 4, image_size=32)[0]
    assert image.shape == (3, 32, 32)
    image, _ = Shapes("train", 4, config=ShapesConfig(image_size=96, max_noise=0.0))[0]
    assert image.shape == (3, 96, 96)


def test_noise_and_clutter_can_be_turned_off() -> None:
    clean = ShapesConfig(max_noise=0.0, max_clutter=0)
    a = Shapes("train", 8, config=clean).batch(range(8))[0]
    b = Shapes("train", 8).batch(range(8))[0]
    assert not torch.equal(a, b)
    # Without noise a flat background region has (almost) no pixel-to-pixel variation.
    assert float((a[:, :, :4, 1:] - a[:, :, :4, :-1]).abs().median()) < 0.01


def test_isoluminant_backgrounds_need_colour() -> None:
    """With isoluminant=1, object and background have about the same luma: only hue differs."""
    cfg = ShapesConfig(isoluminant=1.0, max_noise=0.0, max_clutter=0)
    images, _ = Shapes("train", 200, config=cfg).batch(range(200))
    luma = torch.einsum("nchw,c->nhw", images, torch.tensor([0.299, 0.587, 0.114]))
    rgb_spread = images.flatten(2).std(dim=2).mean(dim=1)
    luma_spread = luma.flatten(1).std(dim=1)
    # Luma varies far less than the colour channels do in most images.
    assert float((luma_spread < 0.6 * rgb_spread).float().mean()) > 0.6


def test_works_with_a_dataloader() -> None:
    loader = DataLoader(Shapes("test", 20), batch_size=8)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 64, 64) and labels.shape == (8,)
    assert torch.equal(images[5], Shapes("test", 20)[5][0])


def test_negative_index_and_out_of_range() -> None:
    ds = Shapes("test", 10)
    assert torch.equal(ds[-1][0], ds[9][0])
    with pytest.raises(IndexError, match=r"index 10 is out of range .* use 0 \.\. 9"):
        ds[10]
    with pytest.raises(IndexError, match="index -11 is out of range"):
        ds.batch([0, -11])
    assert len(list(iter(Shapes("test", 3)))) == 3  # the sequence protocol stops


def test_bad_options_are_named() -> None:
    with pytest.raises(InvalidOptionError, match=r"split='training' is not one of \['train'"):
        Shapes("training")
    with pytest.raises(InvalidOptionError, match=r"seed=-1 is not valid"):
        Shapes("train", seed=-1)
    with pytest.raises(InvalidOptionError, match=r"image_size=8 is not valid"):
        ShapesConfig(image_size=8)
    with pytest.raises(InvalidOptionError, match=r"max_noise=0.9 is not valid"):
        ShapesConfig(max_noise=0.9)
