"""The model is not ours: after every call, also one that raises, it is exactly as before."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

import ipydeepvis as dv
from tests.nets import ConvReluPool, FunctionalRelus, SharedRelu, assert_same_state, model_state


def _calls(x: torch.Tensor) -> list[Callable[[dv.Probe], object]]:
    """Good and bad calls on a probe; the bad ones raise DeepVisError."""
    return [
        lambda p: p.activations(x),
        lambda p: p.project(x, p.layers[0].name, 0),
        lambda p: p.project(x, p.layers[-1].name, [0, 1], method="guided", position="all"),
        lambda p: p.project(x + 1, p.layers[1].name, 1, method="gradient"),
        lambda p: p.coverage(x),
        lambda p: p.project(x, "no.such.layer", 0),
        lambda p: p.project(x, p.layers[0].name, 10_000),
        lambda p: p.project(x, p.layers[0].name, 0, method="lrp"),
        lambda p: p.project(x, p.layers[0].name, 0, position=(999, 0)),
        lambda p: p.project(x.double().long(), p.layers[0].name, 0),
        lambda p: p.project(x * float("nan"), p.layers[0].name, 0),
        lambda p: p.project(x[:1], p.layers[0].name, 0),
        lambda p: p.activations(x[None, None]),
    ]


@pytest.mark.parametrize("make", [
    lambda: ConvReluPool(inplace=True),
    lambda: FunctionalRelus(),
    lambda: SharedRelu(),
    lambda: torchvision.models.resnet18(num_classes=10),
])
@pytest.mark.parametrize("training", [True, False])
def test_state_is_restored_after_every_call(make: Callable[[], nn.Module], training: bool) -> None:
    model = make()
    model.train(training)
    if training:
        model.get_submodule(next(n for n, _ in model.named_modules() if n)).eval()  # mixed
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)
    model.register_forward_hook(lambda *a: None)
    model.register_forward_pre_hook(lambda *a: None)
    before = model_state(model)
    size = 40 if isinstance(model, torchvision.models.ResNet) else 12
    x = torch.randn(3, size, size)
    probe = dv.Probe(model)
    for call in _calls(x) * 2:
        try:
            call(probe)
        except dv.DeepVisError:
            pass
        assert_same_state(before, model)
    assert sum(1 for c in _calls(x) if _raises(c, probe)) == 8


def _raises(call: Callable[[dv.Probe], object], probe: dv.Probe) -> bool:
    try:
        call(probe)
    except dv.DeepVisError:
        return True
    return False


def test_state_is_restored_when_the_model_itself_raises() -> None:
    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.conv(x))
            msg = "user bug"
            raise RuntimeError(msg)

    model = Fails().train()
    before = model_state(model)
    with pytest.raises(dv.errors.ModelForwardError, match=r"RuntimeError.*user bug") as info:
        dv.Probe(model).activations(torch.randn(3, 8, 8))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert_same_state(before, model)
    # and nothing of ours is left in torch: ReLU behaves normally afterwards
    y = torch.randn(5, requires_grad=True)
    torch.relu(y).sum().backward()
    assert torch.equal(y.grad, (y > 0).float())


def test_reentrant_use_is_refused() -> None:
    class CallsProbe(nn.Module):
        probe: dv.Probe | None = None  # on the class: the probe's shadow copy reaches it too

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert self.probe is not None
            self.probe.activations(x)
            return self.conv(x)

    model = CallsProbe()
    CallsProbe.probe = dv.Probe(model)
    with pytest.raises(dv.errors.ProbeBusyError, match="already running a call in this thread"):
        CallsProbe.probe.activations(torch.randn(3, 8, 8))


def test_calls_from_two_threads_take_turns() -> None:
    """A second thread waits for the running call instead of failing (a widget's render
    worker and the notebook can share one probe)."""
    import threading

    model = ConvReluPool(seed=0)
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    x = torch.randn(3, 12, 12)
    expected = probe.project(x, "4", [0, 1, 2])
    results: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                results.append(probe.project(x + 0.0, "4", [0, 1, 2]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 60
    assert all(torch.equal(r, expected) for r in results)
