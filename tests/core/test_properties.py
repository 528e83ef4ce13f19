"""Property test: any sequence of public Probe calls, good or bad, on any small net leaves the
model bit-identical, and every error it raises is a DeepVisError.

Nets are drawn with each ReLU site spelled differently (module, in-place module, one module
reused, ``F.relu``, ``torch.relu``, ``Tensor.relu_``), with or without BatchNorm and a linear
head, with mixed training flags, frozen parameters and hooks of the user's own. Calls are drawn
from activations / project / output / coverage / reduce_batch with valid and invalid layers,
units, methods, positions and inputs (NaN, integer dtype, wrong rank, wrong channels, too
small, a batch where one image is expected).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import ipydeepvis as dv
from tests.nets import assert_same_state, model_state

SPELLINGS = ["module", "inplace", "reused", "functional", "torch", "tensor_"]


class RandomNet(nn.Module):
    """conv -> [bn] -> relu -> pool -> conv -> relu -> pool (the same pool) -> [head]."""

    def __init__(self, spellings: tuple[str, str], channels: tuple[int, int], batchnorm: bool,
                 head: bool, seed: int) -> None:
        super().__init__()
        c1, c2 = channels
        self.spellings = spellings
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1)
        self.bn = nn.BatchNorm2d(c1) if batchnorm else nn.Identity()
        inplace = "inplace" in spellings
        self.relu = nn.ReLU(inplace=inplace)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4, 3)) if head else None
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            if batchnorm:
                self.bn.running_mean.copy_(torch.randn(c1, generator=g) * 0.1)

    def _relu(self, x: torch.Tensor, site: int) -> torch.Tensor:
        spelling = self.spellings[site]
        if spelling == "functional":
            return F.relu(x)
        if spelling == "torch":
            return torch.relu(x)
        if spelling == "tensor_":
            return x.relu_()
        if spelling == "reused":
            return self.relu(x)
        return (self.relu, self.relu2)[site](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self._relu(self.bn(self.conv1(x)), 0))
        x = self.pool(self._relu(self.conv2(x), 1))
        return self.head(x) if self.head is not None else x


@st.composite
def nets(draw: st.DrawFn) -> nn.Module:
    model = RandomNet(
        (draw(st.sampled_from(SPELLINGS)), draw(st.sampled_from(SPELLINGS))),
        (draw(st.integers(2, 4)), draw(st.integers(1, 4))),
        draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 100)),
    )
    model.train(draw(st.booleans()))
    modules = [m for _, m in model.named_modules()]
    for module in draw(st.lists(st.sampled_from(modules), max_size=2)):
        module.train(not module.training)
    params = list(model.parameters())
    for param in draw(st.lists(st.sampled_from(params), max_size=2)):
        param.requires_grad_(False)
    for module in draw(st.lists(st.sampled_from(modules), max_size=2)):
        module.register_forward_hook(lambda *a: None)
        module.register_forward_pre_hook(lambda *a: None)
    return model


def _inputs(draw: st.DrawFn, bad: bool) -> torch.Tensor:
    seed = draw(st.integers(0, 1000))
    g = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["batch", "nan", "long", "rank", "channels", "tiny", "big"])
                ) if bad else "image"
    shape = {"batch": (2, 3, 8, 8), "rank": (3, 8), "channels": (4, 8, 8), "tiny": (3, 1, 1),
             "big": (3, 12, 12)}.get(kind, (3, 8, 8))
    x = torch.randn(shape, generator=g)
    if kind == "nan":
        x[0, 0, 0] = float("nan")
    if kind == "long":
        x = x.long()
    return x


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One call: all arguments valid, or one of them drawn from bad values."""
    bad = draw(st.sampled_from([None, None, None, "x", "layer", "units", "method", "position"]))
    x = _inputs(draw, bad == "x")
    layer = draw(st.sampled_from(["relu", "pool", "head", "nope", 3, None]) if bad == "layer"
                 else st.integers(0, 20).map(lambda i: ("index", i)))  # a real layer
    units = draw(st.sampled_from([-1, 5, [], "2", [0, 9], 1.5]) if bad == "units"
                 else st.sampled_from([0, [0], [0, 0]]))
    method = draw(st.just("lrp") if bad == "method"
                  else st.sampled_from(["deconvnet", "guided", "gradient"]))
    position = draw(st.sampled_from(["centre", (1,), (0, 5), (-1, 0), (0, 0)])
                    if bad == "position" else st.sampled_from(["max", "all"]))
    kind = draw(st.sampled_from(["project", "activations", "project", "project", "output",
                                 "coverage", "reduce"]))
    layers = draw(st.one_of(st.none(), st.lists(st.sampled_from(["conv1", "conv2", "pool:2"]),
                                                max_size=2)) if bad != "layer"
                  else st.just(["conv1", "nope"]))
    return kind, {"x": x, "layer": layer, "units": units, "method": method,
                  "position": position, "layers": layers}


def _call(probe: dv.Probe, kind: str, a: dict[str, Any]) -> object:
    layer = a["layer"]
    if isinstance(layer, tuple):
        names = [info.name for info in probe.layers]
        layer = names[layer[1] % len(names)]
    if kind == "activations":
        return probe.activations(a["x"], a["layers"])
    if kind == "project":
        return probe.project(a["x"], layer, a["units"], method=a["method"],
                             position=a["position"])
    if kind == "output":
        return probe.output(a["x"])
    if kind == "coverage":
        return probe.coverage(a["x"] if a["layers"] is None else None)
    return probe.reduce_batch(a["x"], [layer], lambda out: out.amax(dim=1))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model=nets(), sequence=st.lists(calls(), min_size=1, max_size=8))
def test_any_call_sequence_leaves_the_model_bit_identical(
        model: nn.Module, sequence: list[tuple[str, dict[str, Any]]]) -> None:
    before = model_state(model)
    try:
        probe = dv.Probe(model)
    except dv.DeepVisError:
        assert_same_state(before, model)
        return
    for kind, arguments in sequence:
        try:
            result = _call(probe, kind, arguments)
        except dv.DeepVisError:
            pass
        except Exception as exc:  # pragma: no cover - the failure this test exists to find
            msg = f"{kind} raised {type(exc).__name__}, not a DeepVisError: {exc}"
            raise AssertionError(msg) from exc
        else:
            if kind == "project":
                assert bool(torch.isfinite(result).all())  # type: ignore[arg-type]
        assert_same_state(before, model)
    # and the probe still answers like a fresh one
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    fresh = dv.Probe(model)
    got, expected = probe.activations(x), fresh.activations(x)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[name], expected[name]) for name in got)
    assert_same_state(before, model)
