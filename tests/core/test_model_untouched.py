"""The model is not ours: after every call, also one that raises, it is exactly as before."""

from __future__ import annotations

import threading
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
    pytest.param(lambda: torchvision.models.resnet18(num_classes=10), marks=pytest.mark.slow),
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


def _batchnorm_dropout_net() -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Dropout(0.3), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 5),
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def _train(model: nn.Module, steps: int = 40) -> list[float]:
    """SGD with momentum in train mode; dropout draws from the global RNG, seeded here."""
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(steps, 16, 3, 16, 16, generator=g)
    ys = torch.randint(0, 5, (steps, 16), generator=g)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(0)
    model.train()
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(xs[step]), ys[step])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_while_another_thread_probes_is_bit_identical() -> None:
    """A dashboard worker projecting while the notebook trains: the training runs exactly as
    without it (no hooks, no eval mode, no RNG draws on its modules), the worker never sees a
    raw autograd error (a call whose weights moved is run again, or refused plainly), and
    afterwards the probe serves the new weights."""
    reference = _batchnorm_dropout_net()
    expected = _train(reference)
    model = _batchnorm_dropout_net()
    probe = dv.Probe(model, input_shape=(3, 16, 16))
    x = torch.randn(3, 16, 16)
    stop, started = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def worker() -> None:
        step = 0
        while not stop.is_set():
            try:
                if step % 2:
                    probe.project(x, "5", [0, 1, 2], method="guided")
                else:
                    probe.activations(x + step, ["3", "11"])
                outcomes.append("ok")
            except dv.errors.WeightsChangedError:
                outcomes.append("changed")
            except BaseException as exc:  # any other error fails the test
                outcomes.append(repr(exc))
            started.set()
            step += 1

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    try:
        losses = _train(model)
    finally:
        stop.set()
        thread.join()
    assert losses == expected
    assert all(torch.equal(a, b) for a, b in
               zip(model.state_dict().values(), reference.state_dict().values(), strict=True))
    assert set(outcomes) <= {"ok", "changed"} and "ok" in outcomes
    fresh = dv.Probe(model)
    got, want = probe.activations(x), fresh.activations(x)
    assert all(torch.equal(got[name], want[name]) for name in want)
    assert torch.equal(probe.project(x, "5", [0, 7]), fresh.project(x, "5", [0, 7]))
