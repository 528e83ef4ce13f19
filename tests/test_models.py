"""The small ZF-style classifier and the model registry."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ipydeepvis.data import Shapes
from ipydeepvis.errors import InvalidOptionError
from ipydeepvis.models import MODELS, Normalize, ZFNet, ZFNetConfig, build_model, model_config


def test_zf_layers_have_readable_names_and_zf_hyperparameters() -> None:
    model = build_model("zf")
    modules = dict(model.named_modules())
    for i in range(1, 6):
        assert isinstance(modules[f"features.conv{i}"], nn.Conv2d)
        relu = modules[f"features.relu{i}"]
        assert isinstance(relu, nn.ReLU) and relu.inplace
    for name in ("features.pool1", "features.pool2", "features.pool5"):
        pool = modules[name]
        assert isinstance(pool, nn.MaxPool2d)
        assert (pool.kernel_size, pool.stride) == (3, 2)  # overlapping pooling
    conv1 = modules["features.conv1"]
    assert conv1.kernel_size == (7, 7) and conv1.stride == (2, 2)
    assert isinstance(modules["normalize"], Normalize)
    assert isinstance(modules["classifier.fc"], nn.Linear)
    assert list(modules)[:3] == ["", "normalize", "features"]


def test_size_is_a_few_hundred_thousand_parameters() -> None:
    model = build_model("zf")
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n <= 400_000, n
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert nbytes < 1_000_000  # one checkpoint < 1 MB, so the shipped series stays small


def test_takes_shapes_images_as_they_are() -> None:
    image, _ = Shapes("test", 4)[0]
    model = build_model("zf").eval()
    logits = model(image[None])
    assert logits.shape == (1, 11)
    # The normalisation is inside: the first module does exactly (x - mean) / std.
    norm = model.normalize
    expected = (image - norm.mean) / norm.std  # buffers of shape (3, 1, 1)
    assert torch.allclose(norm(image[None])[0], expected)
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())


def test_spatial_sizes_at_64_pixels() -> None:
    model = build_model("zf").eval()
    sizes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: sizes.__setitem__(n, tuple(out.shape)))
        for n, m in model.named_modules()
        if n.startswith("features.")
    ]
    try:
        model(torch.rand(2, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    assert sizes["features.conv1"][2:] == (32, 32)
    assert sizes["features.pool1"][2:] == (16, 16)
    assert sizes["features.pool2"][2:] == (8, 8)
    assert sizes["features.pool5"][2:] == (4, 4)


def test_seeded_generator_gives_same_weights_and_leaves_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    a = build_model("zf", generator=torch.Generator().manual_seed(3))
    b = build_model("zf", generator=torch.Generator().manual_seed(3))
    c = build_model("zf", generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), before)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert not torch.equal(a.features.conv1.weight, c.features.conv1.weight)


def test_config_round_trips_through_json() -> None:
    model = build_model("zf", widths=(8, 8, 16, 16, 8), hidden=16, num_classes=5)
    config = json.loads(json.dumps(model_config(model)))
    again = build_model("zf", **config)
    assert isinstance(again, ZFNet) and again.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}


def test_registry_errors_name_the_choices() -> None:
    assert "zf" in MODELS
    with pytest.raises(InvalidOptionError, match=r"model 'alexnet' is not one of .*\['zf'\]"):
        build_model("alexnet")
    with pytest.raises(InvalidOptionError, match=r"unknown option\(s\) \['depth'\] for model 'zf'"):
        build_model("zf", depth=3)
    with pytest.raises(InvalidOptionError, match=r"widths=\(1, 2\) is not valid"):
        ZFNetConfig(widths=(1, 2))
    with pytest.raises(InvalidOptionError, match="image_size=40 is not valid"):
        ZFNetConfig(image_size=40)
    with pytest.raises(InvalidOptionError, match="'Linear' is not a registered architecture"):
        model_config(nn.Linear(2, 2))


def test_other_image_sizes() -> None:
    model = build_model("zf", image_size=32).eval()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 11)
