"""Probe behaviour: captured values, layer listing, one forward per (image, weights)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ipydeepvis as dv
from tests.nets import ConvReluPool, SharedRelu


class Counter:
    """Counts calls of a module with a hook the probe must leave in place (the probe's shadow
    copy of the module calls the same hook)."""

    def __init__(self, module: nn.Module) -> None:
        self.count = 0
        module.register_forward_pre_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1


def test_conv_before_inplace_relu_keeps_negative_values() -> None:
    model = ConvReluPool(inplace=True, seed=0)
    x = torch.randn(3, 12, 12)
    acts = dv.Probe(model).activations(x)
    expected = F.conv2d(x[None], model[0].weight, model[0].bias, padding=1)
    torch.testing.assert_close(acts["0"], expected)
    assert acts["0"].min() < 0  # the in-place ReLU that follows did not overwrite it
    torch.testing.assert_close(acts["1"], expected.clamp(min=0))


def test_activations_are_copies() -> None:
    model = ConvReluPool(seed=0)
    probe = dv.Probe(model)
    x = torch.randn(3, 12, 12)
    first = probe.activations(x)["0"]
    first.zero_()
    assert probe.activations(x)["0"].abs().sum() > 0


def test_layer_info_agrees_with_real_tensors() -> None:
    model = ConvReluPool(pool=(3, 2), seed=0)
    probe = dv.Probe(model)
    before = probe.layers
    assert [layer.name for layer in before] == ["0", "1", "2", "3", "4", "5"]
    assert before[0].shape is None and before[0].channels == 4
    x = torch.randn(2, 3, 13, 13)
    acts = probe.activations(x)
    layers = probe.layers
    assert [layer.kind for layer in layers] == ["conv", "relu", "pool", "conv", "relu", "pool"]
    for layer in layers:
        assert acts[layer.name].shape == (2, *layer.shape)
        assert layer.channels == layer.shape[0]
    assert layers[2].shape == (4, 6, 6)


def test_input_shape_fills_in_layers_at_once() -> None:
    probe = dv.Probe(ConvReluPool(seed=0), input_shape=(3, 16, 16))
    assert probe.layer("5").shape == (5, 4, 4)


def test_reused_module_has_one_layer_per_call() -> None:
    model = SharedRelu(seed=0)
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    names = [layer.name for layer in probe.layers]
    assert names == ["conv1", "relu:1", "pool1", "conv2", "relu:2", "pool2"]
    x = torch.randn(3, 12, 12)
    acts = probe.activations(x)
    conv1 = F.conv2d(x[None], model.conv1.weight, model.conv1.bias, padding=1)
    torch.testing.assert_close(acts["relu:1"], conv1.clamp(min=0))
    assert acts["relu:2"].shape == (1, 5, 6, 6)
    with pytest.raises(dv.errors.LayerNotFoundError, match=r"'relu' is one module called 2 times"):
        probe.project(x, "relu", 0)
    assert probe.layer("conv1:1").name == "conv1"


def test_one_forward_serves_every_layer_unit_and_method() -> None:
    model = ConvReluPool(seed=0)
    counter = Counter(model)
    probe = dv.Probe(model)
    x = torch.randn(3, 12, 12)
    probe.activations(x)
    for layer in probe.layers:
        for method in ["deconvnet", "guided", "gradient"]:
            for position in ["max", "all"]:
                probe.project(x, layer.name, [0, 1], method=method, position=position)
                probe.project(x.clone(), layer.name, 2, method=method, position=position)
    probe.activations(x, layers=["3"])
    assert counter.count == 1
    probe.project(x + 1, "0", 0)  # a new image runs the model again
    assert counter.count == 2
    with torch.no_grad():
        model[0].weight.add_(0.1)  # new weights, too
    probe.project(x + 1, "0", 0)
    assert counter.count == 3


def test_early_layer_projection_stops_the_forward_there() -> None:
    model = ConvReluPool(seed=0)
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    last = Counter(model[5])
    first = Counter(model[0])
    x = torch.randn(3, 12, 12)
    probe.project(x, "1", [0, 1])
    probe.project(x, "0", 3, method="gradient")
    assert (first.count, last.count) == (1, 0)
    probe.project(x, "5", 0)  # deeper: the whole model runs once more, then all is cached
    probe.project(x, "2", 0)
    assert (first.count, last.count) == (2, 1)


def test_coverage_reports_replaced_and_untouched_rectifiers() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU(inplace=True)
            self.act = nn.ReLU6()
            self.conv2 = nn.Conv2d(4, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.conv(x))
            x = torch.relu(self.conv2(x))
            return F.gelu(self.act(x))

    probe = dv.Probe(Mixed())
    report = probe.coverage(torch.randn(3, 10, 10))
    assert [(c.site, c.op, c.module_call) for c in report.replaced] == [
        ("relu", "relu_", True), ("<model>", "relu", False)]
    assert [(c.site, c.op) for c in report.untouched] == [
        ("act", "hardtanh (ReLU6)"), ("<model>", "gelu")]
    assert not report.complete
    assert "kept its ordinary gradient" in str(report)
    assert any("gelu" in w and "hardtanh" in w for w in report.warnings)


def test_untouched_rectifier_keeps_its_own_gradient() -> None:
    """Deconvnet through a LeakyReLU is the LeakyReLU's gradient (as the report says)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(0.1), nn.Conv2d(2, 1, 3))
    x = torch.randn(1, 1, 8, 8)
    out = dv.Probe(model).project(x, "2", 0, method="deconvnet", position="all")
    leaf = x.clone().requires_grad_(True)
    y = model(leaf)
    (expected,) = torch.autograd.grad(y, leaf, y.detach())
    torch.testing.assert_close(out, expected)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_coverage_warns_about_torchscript_modules() -> None:
    inner = torch.jit.script(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()))
    model = nn.Sequential(inner, nn.Conv2d(2, 2, 3))
    report = dv.Probe(model).coverage(torch.randn(3, 9, 9))
    assert report.bypassing_modules == ("0",)
    assert not report.complete
    assert any("TorchScript module(s) '0'" in w for w in report.warnings)


def test_output_is_the_model_output_from_the_same_pass() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(2 * 6 * 6, 4))
    counter = Counter(model)
    probe = dv.Probe(model)
    x = torch.randn(3, 8, 8)
    probe.project(x, "3", 1)
    logits = probe.output(x)
    torch.testing.assert_close(logits, model(x[None]).detach())
    assert counter.count == 2  # the probe's single pass, plus the reference call just above


def test_coverage_names_the_calls_of_a_reused_relu() -> None:
    report = dv.Probe(SharedRelu(seed=0)).coverage(torch.randn(3, 12, 12))
    assert [c.site for c in report.replaced] == ["relu:1", "relu:2"]


def test_replaced_or_reloaded_weights_run_the_model_again() -> None:
    model = ConvReluPool(seed=0)
    counter = Counter(model)
    probe = dv.Probe(model)
    x = torch.randn(3, 12, 12)
    first = probe.activations(x)["0"]
    model[0].weight = nn.Parameter(model[0].weight.detach() * 2)  # a new tensor
    second = probe.activations(x)["0"]
    model.load_state_dict(ConvReluPool(seed=1).state_dict())  # copied in place
    probe.activations(x)
    assert counter.count == 3
    assert not torch.equal(first, second)


def _head_model() -> nn.Sequential:
    model = nn.Sequential(ConvReluPool(seed=0), nn.Flatten())
    model.add_module("fc", nn.Linear(5 * 3 * 3, 4))
    return model


def _same_as_fresh(probe: dv.Probe, x: torch.Tensor) -> None:
    """The probe serves exactly what a probe built now would serve: layers, values, projections."""
    fresh = dv.Probe(probe.model)
    got, expected = probe.activations(x), fresh.activations(x)
    assert probe.layers == fresh.layers and got.keys() == expected.keys()
    assert all(torch.equal(got[name], expected[name]) for name in got)
    for layer in probe.layers:
        units = [0, (layer.channels or 1) - 1]
        assert torch.equal(probe.project(x, layer.name, units), fresh.project(x, layer.name, units))


def test_a_replaced_layer_is_served_not_the_old_one() -> None:
    model = _head_model()
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    x = torch.randn(3, 12, 12)
    old = probe.activations(x)
    model[0][3] = nn.Conv2d(4, 5, 1)  # same shapes: only the values can tell
    assert not torch.equal(probe.activations(x)["0.3"], old["0.3"])
    _same_as_fresh(probe, x)
    model[0][3] = nn.Conv2d(4, 6, 3, padding=1)  # a different width, down to the head
    model.fc = nn.Linear(6 * 3 * 3, 9)
    assert probe.layer("fc").channels == 9 and probe.layer("0.3").channels == 6
    assert probe.output(x).shape == (1, 9)
    _same_as_fresh(probe, x)


def test_a_new_head_and_a_replaced_parameter_are_served() -> None:
    model = _head_model()
    probe = dv.Probe(model)
    x = torch.randn(3, 12, 12)
    probe.project(x, "fc", [0, 3])
    model.fc = nn.Linear(5 * 3 * 3, 2)  # fine-tuning a new head
    assert probe.project(x, "fc", [0, 1]).shape == (2, 3, 12, 12)
    with pytest.raises(dv.errors.UnitOutOfRangeError, match="which has 2 units"):
        probe.project(x, "fc", 3)
    model[0][0].weight = nn.Parameter(torch.ones_like(model[0][0].weight))
    _same_as_fresh(probe, x)
    del model.fc  # a removed layer is no longer listed
    assert "fc" not in [layer.name for layer in probe.layers]
    with pytest.raises(dv.errors.LayerNotFoundError, match="'fc' is not a layer"):
        probe.project(x, "fc", 0)


@pytest.mark.parametrize("wrap", [nn.DataParallel, lambda m: nn.DataParallel(nn.DataParallel(m))])
def test_data_parallel_is_a_container_not_a_layer(wrap: object) -> None:
    model = _head_model()
    wrapped = wrap(model)  # type: ignore[operator]
    probe = dv.Probe(wrapped, input_shape=(3, 12, 12))
    plain = dv.Probe(model, input_shape=(3, 12, 12))
    assert probe.model is wrapped
    assert probe.layers == plain.layers and not any("module" in la.name for la in probe.layers)
    x = torch.randn(3, 12, 12)
    assert torch.equal(probe.project(x, "0.3", [1, 2]), plain.project(x, "0.3", [1, 2]))


@pytest.mark.slow  # importing torch._dynamo takes seconds
def test_torch_compile_runs_the_model_it_wraps() -> None:
    model = _head_model()
    compiled = torch.compile(model)
    probe = dv.Probe(compiled, input_shape=(3, 12, 12))
    plain = dv.Probe(model, input_shape=(3, 12, 12))
    assert probe.layers == plain.layers
    assert not any("_orig_mod" in layer.name for layer in probe.layers)
    x = torch.randn(3, 12, 12)
    for method in ["deconvnet", "guided"]:
        assert torch.equal(probe.project(x, "0.4", [0, 3], method=method),
                           plain.project(x, "0.4", [0, 3], method=method))
    assert torch.equal(probe.output(x), plain.output(x))
    # a compiled block inside a model runs eagerly, named without _orig_mod
    model[0] = torch.compile(model[0])
    assert [la.name for la in plain.layers] == [la.name for la in probe.layers]
    assert torch.equal(plain.project(x, "0.4", 1), probe.project(x, "0.4", 1))


def test_clear_forgets_the_pass_and_keeps_working() -> None:
    model = ConvReluPool(seed=0)
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    counter = Counter(model)
    x = torch.randn(3, 12, 12)
    first = probe.project(x, "4", [0, 3])
    layers = probe.layers
    probe.clear()
    assert probe.layers == layers  # the tree did not change: the traced layers stay
    assert torch.equal(probe.project(x, "4", [0, 3]), first)
    assert counter.count == 2  # the pass was forgotten: the model ran again


class _MovesItsWeights(ConvReluPool):
    """Bumps a weight in place during its first ``moves`` forwards (at ``when``: in the forward,
    or in the backward through it), as a training step in another thread would."""

    moves = 0
    when = "forward"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = _MovesItsWeights

        def bump(*_: object) -> None:
            if cls.moves > 0:
                cls.moves -= 1
                with torch.no_grad():
                    self[3].weight.mul_(1.0)  # same values, a new version: the key moves

        for index, module in enumerate(self):
            x = module(x)
            if index == 3 and cls.when == "forward":
                bump()
            if index == 3 and cls.when == "backward" and x.requires_grad:
                # before the conv's own backward reads its saved weight: autograd would raise
                # "modified by an inplace operation"
                x.register_hook(bump)
        return x


@pytest.mark.parametrize("when", ["forward", "backward"])
def test_a_call_whose_weights_moved_runs_again(when: str) -> None:
    model = _MovesItsWeights(seed=0)
    _MovesItsWeights.when, _MovesItsWeights.moves = when, 0
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    x = torch.randn(3, 12, 12)
    expected = dv.Probe(model).project(x, "4", [0, 2])
    _MovesItsWeights.moves = 2  # two attempts see the weights move, the third one is clean
    assert torch.equal(probe.project(x, "4", [0, 2]), expected)
    assert _MovesItsWeights.moves == 0
    _MovesItsWeights.moves = 100  # moving all the time: refused plainly, nothing raw
    with pytest.raises(dv.errors.WeightsChangedError,
                       match=r"weights changed during each of 4 attempts .*training loop"):
        probe.project(x + 1, "4", [0, 2])
    _MovesItsWeights.moves = 0
    assert torch.equal(probe.project(x, "4", [0, 2]), expected)  # and usable afterwards
