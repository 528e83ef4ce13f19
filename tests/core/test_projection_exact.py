"""Projections equal a literal NumPy deconvnet / guided backprop / gradient, number for number."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from tests.core.reference_deconvnet import project_conv_relu_pool
from tests.nets import ConvReluPool, FunctionalRelus, SharedRelu

METHODS = ["deconvnet", "guided", "gradient"]
# (pool, input size): non-overlapping 2x2/2 and overlapping 3x3/2 (AlexNet, ZFNet)
POOLS = [((2, 2), 12), ((3, 2), 13)]


def _params(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [(c.weight.detach().double().numpy(), c.bias.detach().double().numpy()) for c in convs]


def test_hand_computed_deconvnet_of_one_conv() -> None:
    """A 2x2 filter [[1, 2], [3, 4]] on arange(9): the max is 67 at (1, 1); the deconvnet
    places 67 * filter back at rows/cols 1..2 and nothing else."""
    model = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    x = torch.arange(9.0).reshape(1, 3, 3)
    probe = dv.Probe(model)
    acts = probe.activations(x)
    assert acts["0"][0, 0].tolist() == [[27.0, 37.0], [57.0, 67.0]]
    for layer in ["0", "1"]:
        out = probe.project(x, layer, 0, method="deconvnet")
        expected = torch.tensor([[0.0, 0, 0], [0, 67, 134], [0, 201, 268]])
        assert torch.equal(out[0, 0], expected)


@pytest.mark.parametrize(("pool", "size"), POOLS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layer_index", [0, 2, 3, 4, 5])
def test_matches_literal_numpy(pool: tuple[int, int], size: int, method: str,
                               layer_index: int) -> None:
    model = ConvReluPool(pool, seed=3).double()
    x = torch.randn(3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    probe = dv.Probe(model)
    channels = probe.activations(x)[str(layer_index)].shape[1]
    units = list(range(channels))
    got = probe.project(x, str(layer_index), units, method=method).double()
    live = 0
    for unit in units:
        expected = project_conv_relu_pool(x.numpy(), _params(model), pool, layer_index, unit,
                                          method)
        np.testing.assert_allclose(got[unit].numpy(), expected, rtol=1e-5, atol=1e-9)
        live += bool(np.abs(expected).max() > 0)
    assert live >= 2  # the comparison is not between zeros


def test_overlapping_pool_shared_switches_add_up() -> None:
    """Where two 3x3/2 windows share a switch, both contributions reach that pixel.

    ``max_unpool2d`` writes one of them only; the probe must agree with the adding reference
    and therefore differ from an unpool-based chain on this input."""
    pool = (3, 2)
    model = ConvReluPool(pool, seed=3).double()
    # a single bright pixel is the max of all four windows around it
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 4] = 1.0
    seq = nn.Sequential(nn.MaxPool2d(3, 2)).double()
    probe = dv.Probe(seq)
    out = probe.project(x, "0", 0, method="deconvnet", position="all")
    # the 4x4 pool output holds 1.0 in the 4 windows that contain (4, 4)
    assert probe.activations(x)["0"][0, 0].sum().item() == 4.0
    assert out[0, 0, 4, 4].item() == 4.0
    assert out.sum().item() == 4.0
    unpooled = torch.nn.functional.max_unpool2d(
        *torch.nn.functional.max_pool2d(x, 3, 2, return_indices=True), 3, 2, output_size=(9, 9))
    assert unpooled[0, 0, 4, 4].item() == 1.0  # max_unpool2d keeps one writer only
    del model


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("variant", ["inplace", "functional", "shared"])
def test_real_model_relu_spellings(variant: str, method: str) -> None:
    """nn.ReLU(inplace=True), F.relu / Tensor.relu_ in forward, one ReLU module reused: all
    give the literal reference's numbers."""
    pool = (3, 2)
    reference = ConvReluPool(pool, seed=5).double()
    model = {
        "inplace": lambda: ConvReluPool(pool, inplace=True, seed=5),
        "functional": lambda: FunctionalRelus(pool, seed=5),
        "shared": lambda: SharedRelu(pool, seed=5),
    }[variant]().double()
    x = torch.randn(3, 13, 13, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    probe = dv.Probe(model)
    probe.activations(x)
    last = probe.layers[-1].name
    got = probe.project(x, last, [0, 1, 2, 3, 4], method=method)
    for unit in range(5):
        expected = project_conv_relu_pool(x.numpy(), _params(reference), pool, 5, unit, method)
        np.testing.assert_allclose(got[unit].double().numpy(), expected, rtol=1e-5, atol=1e-9)


def test_positions_all_and_explicit() -> None:
    pool = (2, 2)
    model = ConvReluPool(pool, seed=7).double()
    x = torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    probe = dv.Probe(model)
    for position in ["all", (1, 2), (0, 0)]:
        got = probe.project(x, "4", [0, 3], method="deconvnet", position=position)
        for row, unit in enumerate([0, 3]):
            expected = project_conv_relu_pool(x.numpy(), _params(model), pool, 4, unit,
                                              "deconvnet", position)
            np.testing.assert_allclose(got[row].double().numpy(), expected, rtol=1e-5, atol=1e-9)


def test_max_seed_keeps_the_activation_value() -> None:
    """With the gradient through one linear conv, the projection is value * filter."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3))
    x = torch.randn(2, 6, 6)
    probe = dv.Probe(model)
    act = probe.activations(x)["0"][0]
    out = probe.project(x, "0", [0, 1, 2], method="gradient")
    for unit in range(3):
        value = act[unit].max()
        i, j = divmod(int(act[unit].argmax()), act.shape[2])
        expected = torch.zeros(2, 6, 6)
        expected[:, i:i + 3, j:j + 3] = value * model[0].weight[unit].detach()
        torch.testing.assert_close(out[unit], expected)


def test_batched_equals_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vmap-batched backward and one backward per unit give identical projections."""
    import ipydeepvis.core.probe as probe_module

    model = ConvReluPool((3, 2), seed=1)
    x = torch.randn(3, 13, 13)
    units = list(range(5))
    results = {}
    for budget in (0, 1 << 30):  # 0: one backward per unit; huge: all units in one vmap
        monkeypatch.setattr(probe_module, "_BATCH_VALUES_BUDGET", budget)
        probe = dv.Probe(model)
        results[budget] = probe.project(x, "3", units, method="guided")
        singles = torch.cat([probe.project(x, "3", u, method="guided") for u in units])
        # batched convolutions may sum in another order: equal up to float32 rounding
        torch.testing.assert_close(results[budget], singles, rtol=1e-6, atol=1e-7)
        assert singles.abs().max() > 0.1
    torch.testing.assert_close(results[0], results[1 << 30], rtol=1e-6, atol=1e-7)
