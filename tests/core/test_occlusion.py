"""Occlusion sensitivity equals a one-window-at-a-time reference, and captum on the class map."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from ipydeepvis.core.occlusion import grid_positions
from tests.nets import ConvReluPool, SharedRelu, assert_same_state, model_state, seeded


def classifier(seed: int = 0, inplace: bool = False) -> nn.Sequential:
    """conv-relu-pool twice, then a linear layer to 4 classes, on 3 x 12 x 12 images."""
    net = nn.Sequential(*ConvReluPool(inplace=inplace, seed=seed), nn.Flatten(),
                        nn.Linear(5 * 3 * 3, 4))
    with torch.no_grad():
        net[-1].weight.copy_(torch.randn(4, 45, generator=seeded(seed + 1)))
    return net


def reference(model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
              patch: tuple[int, int], stride: tuple[int, int], fill: torch.Tensor,
              score: Callable[[torch.Tensor], torch.Tensor]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One occluded copy per forward, built by slicing: (top rows, left cols, scores)."""
    _c, h, w = image.shape
    rows = [i * stride[0] for i in range(math.ceil((h - patch[0]) / stride[0]) + 1)]
    cols = [j * stride[1] for j in range(math.ceil((w - patch[1]) / stride[1]) + 1)]
    out = np.zeros((len(rows), len(cols)))
    if isinstance(model, nn.Module):
        model.eval()
    with torch.no_grad():
        for i, top in enumerate(rows):
            for j, left in enumerate(cols):
                copy = image.clone()
                copy[:, top:top + patch[0], left:left + patch[1]] = \
                    fill[:, top:top + patch[0], left:left + patch[1]]
                out[i, j] = float(score(model(copy[None])))
    return np.array(rows), np.array(cols), out


def test_hand_set_linear_model_exact_numbers() -> None:
    # logits = (sum of pixels, 0): the class-0 probability of each occlusion is known exactly
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.ones(16), torch.zeros(16)]))
        model[1].bias.zero_()
    image = torch.arange(16, dtype=torch.float32).view(1, 4, 4) / 16
    result = dv.occlusion(model, image, target=0, patch=2, stride=2, fill=0.0)
    assert result.rows.tolist() == [0, 2] and result.cols.tolist() == [0, 2]
    total = float(image.sum())
    kept = [[total - float(image[0, r:r + 2, c:c + 2].sum()) for c in (0, 2)] for r in (0, 2)]
    expected = 1 / (1 + np.exp(-np.array(kept)))
    np.testing.assert_allclose(result.probability, expected, rtol=1e-12)
    assert result.base == pytest.approx(1 / (1 + math.exp(-total)), rel=1e-12)
    assert result.label.tolist() == [[0, 0], [0, 0]] and result.base_label == 0
    assert result.activation is None and result.complete and result.done == 4


@pytest.mark.parametrize(("size", "patch", "stride"),
                         [(12, 4, 2), (13, 5, 3), (12, (3, 5), (1, 4))])
def test_class_map_equals_one_window_at_a_time(size: int, patch: object, stride: object) -> None:
    model = classifier(seed=3)
    image = torch.rand(3, size, size, generator=seeded(4))
    result = dv.occlusion(model, image, target=2, patch=patch, stride=stride, fill=0.5,
                          batch_size=7)
    fill = torch.full_like(image, 0.5)
    rows, cols, probs = reference(model, image, result.patch, result.stride, fill,
                                  lambda out: out.softmax(1)[0, 2])
    assert result.rows.tolist() == rows.tolist() and result.cols.tolist() == cols.tolist()
    np.testing.assert_allclose(result.probability, probs, atol=1e-6)
    _, _, labels = reference(model, image, result.patch, result.stride, fill,
                             lambda out: out.argmax(1)[0])
    assert result.label.tolist() == labels.astype(int).tolist()


@pytest.mark.parametrize(("size", "patch", "stride", "fill"), [
    (12, 4, 2, "mean"), (13, 5, 3, 0.25), (14, 6, 6, (0.1, 0.2, 0.3))])
def test_attribution_equals_captum_occlusion(size: int, patch: int, stride: int,
                                             fill: object) -> None:
    import captum.attr as captum_attr  # in the test extra: CI must not skip this comparison
    model = classifier(seed=5).eval()
    image = torch.rand(3, size, size, generator=seeded(6))
    result = dv.occlusion(model, image, target=1, patch=patch, stride=stride, fill=fill)
    ours = result.attribution()
    theirs = captum_attr.Occlusion(lambda x: model(x).softmax(1)).attribute(
        image[None], sliding_window_shapes=(3, patch, patch), strides=(1, stride, stride),
        baselines=result.fill[None], target=1)
    assert theirs.shape == (1, 3, size, size)
    for channel in range(3):  # the window spans all channels: captum repeats the map
        np.testing.assert_allclose(ours, theirs[0, channel].double().numpy(), atol=2e-7)


def test_unit_target_sums_the_map_and_stops_at_the_layer() -> None:
    class Head(nn.Module):
        calls = 0  # on the class: the shadow's copy of the module counts here too

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            type(self).calls += 1
            return x.flatten(1)[:, :3]

    body = ConvReluPool(inplace=True, seed=1)  # conv "0" is followed by an in-place ReLU
    model = nn.Sequential(*body, Head())
    image = torch.randn(3, 12, 12, generator=seeded(2))
    probe = dv.Probe(model, input_shape=(3, 12, 12))  # traced once: layer names are known
    Head.calls = 0
    result = dv.occlusion(probe, image, target=("0", 2), patch=3, stride=2, fill=0.0)
    assert Head.calls == 0  # every occluded batch stopped at layer "0"
    fill = torch.zeros_like(image)
    _, _, sums = reference(body[0], image, (3, 3), (2, 2), fill, lambda out: out[0, 2].sum())
    np.testing.assert_allclose(result.activation, sums, rtol=1e-5, atol=1e-5)
    assert (result.activation < 0).any()  # pre-ReLU values: the in-place ReLU did not reach them
    assert result.base == pytest.approx(float(body[0](image[None])[0, 2].sum().detach()), rel=1e-5)
    assert result.probability is None and result.label is None and result.target == ("0", 2)
    np.testing.assert_array_equal(result.values, result.activation)


def test_unit_max_is_the_strongest_unit_and_reused_modules_by_call() -> None:
    model = SharedRelu(seed=3)
    image = torch.rand(3, 12, 12, generator=seeded(1))
    with torch.no_grad():
        second = model.relu(model.conv2(model.pool1(model.relu(model.conv1(image[None])))))
    strongest = int(second[0].flatten(1).amax(1).argmax())
    result = dv.occlusion(model, image, target=("relu:2", "max"), patch=4, stride=4)
    assert result.target == ("relu:2", strongest)
    alias = dv.occlusion(model, image, target=("conv1:1", 0), patch=4, stride=4)  # = "conv1"
    assert alias.activation.shape == (3, 3) and alias.target == ("conv1:1", 0)
    assert result.base == pytest.approx(float(second[0, strongest].sum()), rel=1e-5)

    def upto_second_relu(x: torch.Tensor) -> torch.Tensor:
        return model.relu(model.conv2(model.pool1(model.relu(model.conv1(x)))))

    _, _, sums = reference(upto_second_relu, image, (4, 4), (4, 4), result.fill,
                           lambda out: out[0, strongest].sum())
    np.testing.assert_allclose(result.activation, sums, rtol=1e-5, atol=1e-5)


def test_occluded_image_is_what_the_model_saw_and_batching_does_not_matter() -> None:
    model = classifier(seed=7)
    image = torch.rand(1, 3, 12, 12, generator=seeded(8))
    one = dv.occlusion(model, image, target=None, patch=5, stride=3, batch_size=1)
    many = dv.occlusion(model, image, target=None, patch=5, stride=3, batch_size=100)
    np.testing.assert_allclose(one.probability, many.probability, atol=1e-5)  # float32 sums
    assert one.target == int(model(image).argmax())  # None: the predicted class
    seen = one.occluded(1, 2)
    top, left, bottom, right = one.box(1, 2)
    assert (top, left, bottom, right) == (3, 6, 8, 11)
    mean = image[0].mean(dim=(1, 2), keepdim=True).expand(3, 5, 5)
    torch.testing.assert_close(seen[:, 3:8, 6:11], mean)
    assert torch.equal(seen[:, :3], image[0, :, :3])
    prob = float(model.eval()(seen[None]).softmax(1)[0, one.target].detach())
    assert one.probability[1, 2] == pytest.approx(prob, abs=1e-6)


def test_callback_progress_and_stop() -> None:
    model = classifier()
    image = torch.rand(3, 12, 12, generator=seeded(0))
    calls = []
    result = dv.occlusion(model, image, target=0, patch=4, stride=2, batch_size=10,
                          callback=lambda done, total: calls.append((done, total)) or done < 20)
    assert calls == [(10, 25), (20, 25)]
    assert result.done == 20 and not result.complete
    flat = result.probability.reshape(-1)
    assert np.isfinite(flat[:20]).all() and np.isnan(flat[20:]).all()
    assert (result.label.reshape(-1)[20:] == -1).all()
    assert np.isfinite(result.attribution()).any()  # from the computed windows only


def test_grid_positions_match_captum_rule() -> None:
    assert grid_positions(13, 5, 3).tolist() == [0, 3, 6, 9]  # the last patch is cut off
    assert grid_positions(12, 12, 5).tolist() == [0]
    assert grid_positions(10, 1, 1).tolist() == list(range(10))


@pytest.mark.parametrize("training", [True, False])
def test_model_untouched_after_success_and_error(training: bool) -> None:
    model = classifier(inplace=True).train(training)
    model.register_forward_hook(lambda *a: None)
    next(model.parameters()).requires_grad_(False)
    before = model_state(model)
    modules = list(model.named_modules())
    image = torch.rand(3, 12, 12)
    dv.occlusion(model, image, target=1, patch=4, stride=4, progress=True)
    dv.occlusion(dv.Probe(model), image, target=("3", "max"), patch=4, stride=4)
    assert_same_state(before, model)
    assert list(model.named_modules()) == modules  # the windowed chain lives in the shadow
    with pytest.raises(errors.UnitOutOfRangeError):
        dv.occlusion(model, image, target=("3", 99), patch=4, stride=4)
    assert_same_state(before, model)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"patch": 0}, errors.InvalidOptionError, r"patch must be .* got 0"),
    ({"patch": 13}, errors.InvalidOptionError, r"patch must be .* 1 \.\. 12 .* got 13"),
    ({"patch": (2, 3, 4)}, errors.InvalidOptionError, r"got \(2, 3, 4\)"),
    ({"stride": 0}, errors.InvalidOptionError, r"stride must be .* got 0"),
    ({"target": 4}, errors.UnitOutOfRangeError, r"target class 4 is out of range.*0 \.\. 3"),
    ({"target": "cat"}, errors.InvalidOptionError, r"target must be .* got 'cat'"),
    ({"target": ("3", 7)}, errors.UnitOutOfRangeError, r"unit 7 is out of range .*'3'.* 0 \.\. 4"),
    ({"target": ("nope", 0)}, errors.LayerNotFoundError, r"'nope' is not a layer"),
    ({"fill": (0.1, 0.2)}, errors.InvalidOptionError, r"fill has 2 values but .* 3 channel"),
    ({"fill": "grey"}, errors.InvalidOptionError, r"fill must be 'mean'.*got 'grey'"),
    ({"batch_size": 0}, errors.InvalidOptionError, r"batch_size must be a positive int, got 0"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    model = classifier()
    with pytest.raises(error, match=match):
        dv.occlusion(model, torch.rand(3, 12, 12), **{"target": 0, **kwargs})


def test_bad_inputs() -> None:
    model = classifier()
    with pytest.raises(errors.InvalidOptionError, match=r"occlusion takes one image"):
        dv.occlusion(model, torch.rand(2, 3, 12, 12), target=0)
    with pytest.raises(errors.InvalidInputError, match=r"NaN or infinite"):
        dv.occlusion(model, torch.full((3, 12, 12), float("nan")), target=0)
    with pytest.raises(errors.InvalidInputError, match=r"floating-point"):
        dv.occlusion(model, torch.zeros(3, 12, 12, dtype=torch.uint8), target=0)
    with pytest.raises(errors.UnsupportedModelError, match=r"Module or a dv.Probe"):
        dv.occlusion("model", torch.rand(3, 12, 12), target=0)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidOptionError, match=r"position \(9, 0\) is outside"):
        dv.occlusion(model, torch.rand(3, 12, 12), target=0, patch=6, stride=6).occluded(9, 0)
