"""The weight-randomization sanity check: SSIM and Spearman against independent computations,
the randomized projection against plain autograd on a copy randomized here, the model untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.sanity import (
    grey_projection,
    randomizable_layers,
    randomized_copy,
    sanity_cascade,
    sanity_check,
    spearman,
    ssim,
)
from ipydeepvis.errors import InvalidOptionError, UnitOutOfRangeError
from tests.nets import model_state, seeded

scipy_stats = pytest.importorskip("scipy.stats")


def reference_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5,
                   data_range: float = 1.0) -> float:
    """Wang et al. 2004 written out: every window position, weighted sums in plain numpy."""
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i:i + size, j:j + size], b[i:i + size, j:j + size]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            scores.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(scores))


def test_ssim_equals_the_written_out_definition_and_known_values() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((20, 17))
    b = np.clip(a + 0.3 * rng.standard_normal((20, 17)), 0, 1)
    assert ssim(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(
        reference_ssim(a, b), rel=1e-12, abs=1e-12)
    assert ssim(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(1.0, abs=1e-12)
    # two flat images c and d: SSIM is (2cd + C1) / (c^2 + d^2 + C1) exactly
    c, d, c1 = 0.2, 0.7, 0.01 ** 2
    flat = ssim(torch.full((12, 12), c, dtype=torch.float64),
                torch.full((12, 12), d, dtype=torch.float64))
    assert flat == pytest.approx((2 * c * d + c1) / (c * c + d * d + c1), rel=1e-12)
    # an image smaller than the window: the window shrinks to the largest odd size (7)
    small_a, small_b = a[:8, :7], b[:8, :7]
    assert ssim(torch.from_numpy(small_a), torch.from_numpy(small_b)) == pytest.approx(
        reference_ssim(small_a, small_b, size=7), rel=1e-12)


def test_spearman_equals_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    a = np.maximum(rng.standard_normal(300), 0)  # many ties at zero, as after a ReLU
    b = np.abs(a + rng.standard_normal(300))
    expected = scipy_stats.spearmanr(a, b).statistic
    assert spearman(a, b) == pytest.approx(expected, rel=1e-12)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.zeros(5), a[:5]))


def net() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(5 * 4 * 4, 3))
    g = seeded(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def image() -> torch.Tensor:
    return torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(4))


def reset_here(model: nn.Module, names: list[str], order: list[str], seed: int) -> nn.Module:
    """The randomized model built the plain way: a full deep copy, each layer reset with its
    seed."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    state = torch.random.get_rng_state()
    for name in names:
        torch.manual_seed(seed + order.index(name))
        modules[name].reset_parameters()
    torch.random.set_rng_state(state)
    return clone


def gradient_projection(model: nn.Module, x: torch.Tensor, upto: int, unit: int) -> torch.Tensor:
    """The 'gradient' projection of the unit's strongest activation, by plain autograd: the
    activation's value times its gradient with respect to the input."""
    x = x[None].clone().requires_grad_(True)
    out = model[:upto + 1](x)[0, unit]
    peak = out.max()
    (grad,) = torch.autograd.grad(peak, x)
    return (peak.detach() * grad)[0]


def test_randomized_copy_shares_untouched_tensors_and_keeps_the_rng() -> None:
    model = net()
    rng = torch.random.get_rng_state()
    clone = randomized_copy(model, ["3"], order=["0", "3", "6"], seed=7)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert clone[0].weight is model[0].weight and clone[6].bias is model[6].bias
    assert clone[3].weight is not model[3].weight
    expected = reset_here(model, ["3"], ["0", "3", "6"], 7)
    assert torch.equal(clone[3].weight, expected[3].weight)
    assert torch.equal(clone[3].bias, expected[3].bias)
    assert not torch.equal(clone[3].weight, model[3].weight)
    with pytest.raises(InvalidOptionError, match=r"layer '1' cannot be re-initialized"):
        randomized_copy(model, ["1"])


def test_cascading_and_independent_projections_equal_autograd_on_a_copy_randomized_here(
) -> None:
    model, x = net(), image()
    order = randomizable_layers(dv.Probe(model), x)
    assert order == ["0", "3", "6"]
    unit = 2
    for mode, depth, names in [("cascading", "0", ["6", "3", "0"]),
                               ("independent", "3", ["3"])]:
        result = sanity_check(model, x, "4", unit, depth=depth, mode=mode, method="gradient",
                              seed=5)
        assert result.randomized == tuple(names)
        assert result.effective == tuple(n for n in names if n != "6")
        torch.testing.assert_close(result.trained, gradient_projection(model, x, 4, unit))
        random_model = reset_here(model, names, order, 5)
        expected = gradient_projection(random_model, x, 4, unit)
        torch.testing.assert_close(result.projection, expected)
        # the similarities of the two projections, computed here (scipy, the loop above)
        a, b = grey_projection(result.trained), grey_projection(result.projection)
        torch.testing.assert_close(b, grey_projection(expected))
        assert result.spearman == pytest.approx(
            scipy_stats.spearmanr(a.flatten(), b.flatten()).statistic, rel=1e-9)
        assert result.ssim == pytest.approx(reference_ssim(a.numpy(), b.numpy(), size=7),
                                            rel=1e-9)
        assert result.ssim < 0.99  # the weights matter here
    # the same layer gets the same random weights in both schedules (seed per layer)
    one = sanity_check(model, x, "4", unit, depth="3", mode="independent", seed=5)
    both = sanity_check(model, x, "4", unit, depth="3", mode="cascading", seed=5)
    torch.testing.assert_close(one.projection, both.projection)  # "6" lies above the unit


def test_layers_above_the_unit_change_nothing_and_the_default_depth() -> None:
    model, x = net(), image()
    above = sanity_check(model, x, "1", 0, depth="3", mode="independent")
    assert above.randomized == ("3",) and above.effective == ()
    assert torch.equal(above.projection, above.trained)
    assert above.ssim == pytest.approx(1.0) and above.spearman == pytest.approx(1.0)
    default = sanity_check(model, x, "4", 0)  # the highest layer with weights below "4"
    assert default.depth == "3" and default.randomized == ("6", "3")
    cascade = sanity_cascade(model, x, "4", 0)
    assert [r.depth for r in cascade] == ["3", "0"]
    assert cascade[0].randomized == ("6", "3") and cascade[1].randomized == ("6", "3", "0")
    torch.testing.assert_close(cascade[0].projection, default.projection)
    steps = []
    stopped = sanity_cascade(model, x, "4", 0,
                             callback=lambda done, total: bool(steps.append((done, total))))
    assert steps == [(1, 2)] and len(stopped) == 1


def test_the_users_model_is_untouched_also_after_a_raise() -> None:
    model = net().train()
    model[3].weight.requires_grad_(False)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[6].register_forward_hook(lambda m, i, o: None)
    before = model_state(model)
    grad = model[0].weight.grad.clone()
    sanity_check(model, image(), "4", 1, mode="cascading", depth="0")
    sanity_cascade(model, image(), "4", 1, mode="independent")
    with pytest.raises(InvalidOptionError, match=r"depth '2' is not a layer with weights.*'0'"):
        sanity_check(model, image(), "4", 1, depth="2")
    with pytest.raises(InvalidOptionError, match=r"mode must be one of 'cascading'"):
        sanity_check(model, image(), "4", 1, mode="sideways")
    with pytest.raises(UnitOutOfRangeError):
        sanity_check(model, image(), "4", 9)
    after = model_state(model)
    for key, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][key]), key
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    assert torch.equal(model[0].weight.grad, grad)
    assert all(p.grad is None for name, p in model.named_parameters() if name != "0.weight")
