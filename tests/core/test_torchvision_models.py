"""Projections on torchvision AlexNet, VGG16 and ResNet-18 (random weights) and on the embedded
default net (trained) equal an independent computation: a deep copy of the model whose nn.ReLU
modules are swapped for out-of-place ReLUs with the method's backward rule, through plain
autograd."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import ipydeepvis as dv
from tests.nets import assert_same_state, model_state


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, method: str) -> torch.Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        ctx.method = method
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.method == "deconvnet":
            return g.clamp(min=0), None
        if ctx.method == "guided":
            return g.clamp(min=0) * (out > 0), None
        return g * (out > 0), None


class _SwappedReLU(nn.Module):
    def __init__(self, rule: dict[str, str]) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RuleReLU.apply(x, self.rule["method"])


class Reference:
    """A deep copy of the model with every nn.ReLU swapped for a rule ReLU (out of place)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).eval()
        self.rule = {"method": "gradient"}
        swapped: dict[int, nn.Module] = {}
        for module in list(self.model.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.ReLU):
                    new = swapped.setdefault(id(child), _SwappedReLU(self.rule))
                    setattr(module, child_name, new)

    def project(self, x: torch.Tensor, module_name: str, call: int, units: list[int],
                method: str) -> torch.Tensor:
        self.rule["method"] = method
        captured: list[torch.Tensor] = []
        target = self.model.get_submodule(module_name)
        handle = target.register_forward_hook(lambda m, i, o: captured.append(o))
        leaf = x[None].clone().requires_grad_(True)
        try:
            self.model(leaf)
        finally:
            handle.remove()
        out = captured[call - 1]
        grads = []
        for unit in units:
            seed = torch.zeros_like(out)
            flat = out[0, unit].flatten().argmax()
            seed[0, unit].view(-1)[flat] = out[0, unit].flatten()[flat].detach()
            (grad,) = torch.autograd.grad(out, leaf, seed, retain_graph=True)
            grads.append(grad[0])
        return torch.stack(grads)


def _embedded() -> nn.Module:
    from ipydeepvis import demo

    return demo.load().model


MODELS = {
    "embedded": (_embedded, 64, ["features.conv1", "features.pool1", "features.conv5",
                                 "features.relu5", "classifier.fc"]),
    "alexnet": (lambda: torchvision.models.alexnet(num_classes=10), 96,
                ["features.0", "features.3", "features.10", "features.11", "classifier.4"]),
    "vgg16": (lambda: torchvision.models.vgg16(num_classes=10), 64,
              ["features.2", "features.28", "features.30"]),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 64,
                 ["relu", "layer1.0.relu:1", "layer2.1.relu:2", "layer4.1.conv2", "layer4.1"]),
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[] if name == "embedded" else [pytest.mark.slow]) for name in MODELS
])
def test_torchvision_projection_equals_independent_autograd(name: str) -> None:
    make, size, layers = MODELS[name]
    torch.manual_seed(0)
    model = make()
    before = model_state(model)
    x = torch.rand(3, size, size)
    probe = dv.Probe(model)
    probe.activations(x)
    independent = Reference(model)
    for layer in layers:
        info = probe.layer(layer)
        units = [0, info.channels // 2, info.channels - 1]
        for method in ["deconvnet", "guided", "gradient"]:
            got = probe.project(x, layer, units, method=method)
            expected = independent.project(x, info.module, info.call or 1, units, method)
            assert expected.abs().max() > 0
            for row in range(len(units)):
                scale = expected[row].abs().max()
                torch.testing.assert_close(got[row], expected[row], rtol=1e-4,
                                           atol=1e-5 * scale)
    assert_same_state(before, model)
    report = probe.coverage(x)
    assert report.complete and len(report.replaced) == {"embedded": 6, "alexnet": 7,
                                                        "vgg16": 15, "resnet18": 17}[name]


def test_resnet_layers_list_every_call_of_the_shared_relu() -> None:
    probe = dv.Probe(torchvision.models.resnet18(num_classes=10), input_shape=(3, 64, 64))
    names = [layer.name for layer in probe.layers]
    for block in ["layer1.0", "layer1.1", "layer2.0", "layer4.1"]:
        assert f"{block}.relu:1" in names and f"{block}.relu:2" in names
        assert f"{block}.relu" not in names
    assert names.index("layer1.0.relu:1") < names.index("layer1.0.conv2") < names.index(
        "layer1.0.relu:2")
    assert probe.layer("layer4.1.relu:2").shape == (512, 2, 2)
    assert probe.layer("fc").shape == (10,) and probe.layer("fc").kind == "linear"


def test_resnet_fine_tuned_head_is_served_like_a_fresh_probe() -> None:
    """Fine-tuning swaps ResNet's ``fc`` (and DataParallel wraps it): the probe follows."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    before_wrap = dv.Probe(model, input_shape=(3, 64, 64))
    probe = dv.Probe(nn.DataParallel(model), input_shape=(3, 64, 64))
    assert probe.layers == before_wrap.layers
    x = torch.rand(3, 64, 64)
    probe.project(x, "fc", [0, 9])
    model.fc = nn.Linear(512, 3)
    assert probe.layer("fc").channels == 3 and probe.output(x).shape == (1, 3)
    fresh = dv.Probe(model)
    for layer in ["fc", "layer4.1.relu:2"]:
        torch.testing.assert_close(probe.project(x, layer, [0, 2]), fresh.project(x, layer, [0, 2]),
                                   rtol=0, atol=0)
