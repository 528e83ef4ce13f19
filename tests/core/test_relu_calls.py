"""ReLUs written as function calls (F.relu, torch.relu, x.relu_()) are layers like modules are."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.layers import default_layer
from ipydeepvis.core.receptive import receptive_field
from tests.nets import ConvReluPool, FunctionalRelus, assert_same_state, model_state

METHODS = ["deconvnet", "guided", "gradient"]


def _set(conv: nn.Conv2d, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight).view(conv.weight.shape))
        conv.bias.copy_(torch.tensor(bias))


class ThreeSpellings(nn.Module):
    """Three 1x1 convs, each rectified by a different spelling of the ReLU; hand-set weights
    (halves and small integers, so every value is exact in float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 1)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.conv3 = nn.Conv2d(2, 1, 1)
        _set(self.conv1, [[1.0], [-1.0]], [0.0, 0.5])
        _set(self.conv2, [[1.0, 1.0], [1.0, -2.0]], [-1.0, 0.0])
        _set(self.conv3, [[2.0, -1.0]], [0.5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.conv3(x)
        x.relu_()
        return x


def as_modules(net: ThreeSpellings) -> nn.Sequential:
    """The same maths with nn.ReLU(inplace=False) modules (sharing the same weights)."""
    return nn.Sequential(net.conv1, nn.ReLU(), net.conv2, nn.ReLU(), net.conv3, nn.ReLU())


X = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])  # (1, 2, 2)


def by_hand(x: torch.Tensor) -> dict[str, np.ndarray]:
    """The three rectified maps, computed pixel by pixel in plain Python."""
    r1, r2, r3 = (np.zeros((c, 2, 2)) for c in (2, 2, 1))
    for i in range(2):
        for j in range(2):
            v = float(x[0, i, j])
            a = [max(v, 0.0), max(-v + 0.5, 0.0)]
            b = [max(a[0] + a[1] - 1.0, 0.0), max(a[0] - 2.0 * a[1], 0.0)]
            c = max(2.0 * b[0] - b[1] + 0.5, 0.0)
            r1[:, i, j], r2[:, i, j], r3[0, i, j] = a, b, c
    return {"conv1.relu": r1, "conv2.relu": r2, "conv3.relu": r3}


def test_each_spelling_is_a_layer_with_exact_activations() -> None:
    net = ThreeSpellings()
    probe = dv.Probe(net, input_shape=(1, 2, 2))
    layers = probe.layers
    assert [layer.name for layer in layers] == [
        "conv1", "conv1.relu", "conv2", "conv2.relu", "conv3", "conv3.relu"]
    relus = [layer for layer in layers if layer.functional]
    assert [(r.kind, r.shape, r.channels, r.functional_call) for r in relus] == [
        ("relu", (2, 2, 2), 2, 1), ("relu", (2, 2, 2), 2, 2), ("relu", (1, 2, 2), 1, 3)]
    acts = probe.activations(X)
    expected = by_hand(X)
    for name, values in expected.items():
        assert acts[name][0].double().numpy().tolist() == values.tolist(), name
    assert expected["conv2.relu"].max() > 0 and expected["conv3.relu"].max() > 0
    # the conv below an in-place x.relu_() keeps its pre-ReLU values
    assert float(acts["conv3"].min()) == -0.5
    assert probe.layer("conv2.relu") == layers[3]
    assert default_layer(layers) == layers[5]


def test_projections_equal_the_module_nets() -> None:
    net = ThreeSpellings()
    functional, modules = dv.Probe(net), dv.Probe(as_modules(net))
    pairs = {"conv1.relu": ("1", [0, 1]), "conv2.relu": ("3", [0, 1]), "conv3.relu": ("5", [0])}
    for method in METHODS:
        for position in ("max", "all", (1, 0)):
            for layer, (twin, units) in pairs.items():
                got = functional.project(X, layer, units, method=method, position=position)
                want = modules.project(X, twin, units, method=method, position=position)
                assert torch.equal(got, want), (layer, method, position)
    # with pooling and random weights: F.relu and x.relu_() against nn.ReLU(inplace=False)
    x = torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(4))
    functional, modules = dv.Probe(FunctionalRelus(seed=4)), dv.Probe(ConvReluPool(seed=4))
    live = 0
    for method in METHODS:
        for layer, twin in (("conv1.relu", "1"), ("conv2.relu", "4")):
            got = functional.project(x, layer, [0, 1, 2, 3], method=method)
            assert torch.equal(got, modules.project(x, twin, [0, 1, 2, 3], method=method))
            live += int(got.abs().amax() > 0)
    assert live == 6


def test_analyses_read_a_functional_layer_as_they_read_its_module_twin() -> None:
    g = torch.Generator().manual_seed(5)
    data = torch.randn(10, 3, 8, 8, generator=g)
    net, twin = FunctionalRelus(seed=5), ConvReluPool(seed=5)
    got, want = dv.top_k(net, data, "conv2.relu", k=3), dv.top_k(twin, data, "4", k=3)
    assert torch.equal(got.values, want.values) and torch.equal(got.indices, want.indices)
    assert torch.equal(got.positions, want.positions) and float(got.values.max()) > 0
    batch = dv.Probe(net).reduce_batch(data, ["conv1.relu"], lambda t: t.amax(dim=(2, 3)))
    reference = dv.Probe(twin).activations(data, ["1"])["1"].amax(dim=(2, 3))
    assert torch.equal(batch["conv1.relu"], reference)
    a = dv.maximize(net, "conv2.relu", [0, 1], steps=4, size=(8, 8))
    b = dv.maximize(twin, "4", [0, 1], steps=4, size=(8, 8))
    assert torch.equal(a.images, b.images)
    assert receptive_field(net, "conv2.relu", (1, 1), (3, 8, 8)) == \
        receptive_field(twin, "4", (1, 1), (3, 8, 8))
    occluded = dv.occlusion(net, data[0], target=("conv2.relu", 1), patch=2, stride=2)
    plain = dv.occlusion(twin, data[0], target=("4", 1), patch=2, stride=2)
    np.testing.assert_allclose(occluded.activation, plain.activation, rtol=1e-5)
    assert occluded.base == plain.base


class Named(nn.Module):
    """ReLUs of a sum, in a block, twice on one site, and next to a module called ``relu``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Block()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = F.relu(y + 1.0)  # of a sum: named after the calling module (the model)
        y = self.block(y)
        y = torch.relu(y - 1.0)  # again in the model's forward
        return self.relu(y)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.Conv2d(4, 4, 1)  # a module that happens to be called "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(F.relu(x + self.conv(x)))  # site "block", next to module block.relu


def test_names_follow_the_rectified_layer_or_the_calling_module() -> None:
    probe = dv.Probe(Named(), input_shape=(3, 6, 6))
    names = [layer.name for layer in probe.layers]
    # ReLUs of sums are named after the module that calls them; "()" where a module has the
    # name already (block.relu, and the model's own relu); ":k" where a name repeats
    assert names == ["conv", "relu():1", "block.conv", "block.relu()", "block.relu", "block",
                     "relu():2", "relu"]
    kinds = {layer.name: (layer.kind, layer.functional) for layer in probe.layers}
    assert kinds["relu"] == ("relu", False) and kinds["block.relu()"] == ("relu", True)
    assert kinds["block.relu"] == ("conv", False) and kinds["relu():2"] == ("relu", True)
    with pytest.raises(dv.errors.LayerNotFoundError, match=r"'relu\(\):1', 'relu\(\):2'"):
        probe.layer("relu()")
    # the same names from another probe, on another image
    x = torch.randn(3, 6, 6)
    assert list(dv.Probe(Named()).activations(x)) == names
    acts = probe.activations(x)
    assert torch.equal(acts["relu():1"], (acts["conv"] + 1).clamp(min=0))
    assert torch.equal(acts["relu():2"], (acts["block"] - 1).clamp(min=0))


def test_the_model_is_untouched_and_nothing_accumulates_over_100_calls() -> None:
    net = FunctionalRelus(seed=6)
    net.train()
    net.register_forward_hook(lambda *a: None)
    before = model_state(net)
    probe = dv.Probe(net)
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(6))
    data = torch.randn(4, 3, 8, 8)

    def counts() -> tuple[int, int, int]:
        shadow = probe._shadow.module
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in shadow.modules())
        user = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())
        return hooks, user, torch._C._len_torch_function_stack()

    probe.project(x, "conv2.relu", 0)
    start = counts()
    for i in range(100):
        probe.project(x + (i % 3), "conv2.relu", [0, 1], method=METHODS[i % 3])
        if i % 10 == 0:
            probe.reduce_batch(data, ["conv1.relu"], lambda t: t.sum())
            dv.top_k(probe, data, "conv1.relu", k=2)
        assert counts() == start
    assert start == (1, 1, 0)  # the shadow keeps a copy of the user's own hook, no more
    assert_same_state(before, net)
    assert net.training


def test_user_relu_calls_in_another_thread_never_see_the_probe() -> None:
    """The dashboard probes on a worker thread while user code runs F.relu on the main one."""
    net = FunctionalRelus(seed=7)
    probe = dv.Probe(net)
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(7))
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0]

    def work() -> None:
        try:
            while not stop.is_set():
                probe.clear()  # a new recorded pass each time: the mode is entered again
                probe.project(x, "conv2.relu", [0, 1, 2])
                done[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    checked = 0
    try:
        while done[0] < 1 and worker.is_alive():
            stop.wait(0.001)
        start = done[0]
        while (done[0] < start + 20 or checked < 200) and worker.is_alive():
            t = torch.randn(5, requires_grad=True)
            for y in (F.relu(t), torch.relu(t), t.clone().relu_()):
                assert type(y.grad_fn).__name__ == "ReluBackward0", y.grad_fn
            assert torch._C._len_torch_function_stack() == 0
            checked += 1
    finally:
        stop.set()
        worker.join()
    assert not errors and checked >= 200 and done[0] >= 20


def test_the_default_layer_is_the_deepest_rectified_conv() -> None:
    layers = dv.Probe(ConvReluPool(), input_shape=(3, 8, 8)).layers
    assert default_layer(layers).name == "4"  # type: ignore[union-attr]
    assert default_layer(layers, modules=False).name == "3"  # type: ignore[union-attr]
    functional = dv.Probe(FunctionalRelus(), input_shape=(3, 8, 8)).layers
    assert default_layer(functional, modules=False).name == "conv2.relu"  # type: ignore[union-attr]
    assert default_layer(dv.Probe(nn.Linear(3, 2)).layers) is None
