"""How fast ``Probe.project`` is, next to the plain-torch limit and captum, in one run.

For each model (the embedded net at 64 px, AlexNet and VGG16 at 224, random weights, batch of
one image, the last conv layer, ``position="max"``, deconvnet) it measures medians of:

- plain torch: a forward pass to the layer, and one backward pass from one seeded unit through
  a copy of the model whose ``nn.ReLU`` modules apply the deconvnet rule -- the least any
  implementation must do;
- ``project`` of one unit on a new image (forward + backward);
- ``project`` of another unit on the same image (the recorded forward is reused);
- ``project`` of 64 units in one call, per unit;
- captum's ``NeuronDeconvolution`` per call on the same unit (captum has no cache: every call
  runs the model). torch-lucent has no projection method, so it has no row here.

Run with ``make bench`` (or ``python benchmarks/bench_projection.py [--quick]``).
"""

from __future__ import annotations

import argparse
import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from _timing import Case, median_ms
from torch import nn

import ipydeepvis as dv


def _embedded() -> nn.Module:
    from ipydeepvis import demo

    return demo.load().model


def _embedded_layer() -> str:
    model = _embedded()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1]


CASES = [
    Case("embedded net 64px", _embedded, 64, "", 30),
    Case("AlexNet 224px", lambda: torchvision.models.alexnet(), 224, "features.10", 10),
    Case("VGG16 224px", lambda: torchvision.models.vgg16(), 224, "features.28", 5),
]


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g.clamp(min=0)


class _SwappedReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DeconvReLU.apply(x)


class _Stop(Exception):
    pass


def plain_torch(model: nn.Module, layer: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Forward to ``layer`` in a ReLU-swapped copy; returns the layer output (graph kept)."""
    copy_ = copy.deepcopy(model).eval()
    for module in list(copy_.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, _SwappedReLU())
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        captured.append(out)
        raise _Stop

    copy_.get_submodule(layer).register_forward_hook(hook)

    def run(x: torch.Tensor) -> torch.Tensor:
        captured.clear()
        try:
            copy_(x)
        except _Stop:
            pass
        return captured[0]

    return run


def seed_at_max(out: torch.Tensor, unit: int) -> torch.Tensor:
    seed = torch.zeros_like(out)
    flat = out[0, unit].flatten()
    index = int(flat.argmax())
    seed[0, unit].view(-1)[index] = flat[index].detach()
    return seed


def bench_case(case: Case, quick: bool) -> list[tuple[str, str, float, str]]:
    torch.manual_seed(0)
    model = case.build().eval()
    layer = case.layer or _embedded_layer()
    repeats = max(3, case.repeats // (3 if quick else 1))
    images = [torch.rand(3, case.size, case.size) for _ in range(repeats + 3)]
    x = images[0]
    unit, other = 3, 5
    rows: list[tuple[str, str, float, str]] = []

    run = plain_torch(model, layer)
    leaf = x[None].clone().requires_grad_(True)
    forward_ms = median_ms(lambda i: run(images[i][None].clone().requires_grad_(True)), repeats)
    out = run(leaf)
    seed = seed_at_max(out, unit)
    backward_ms = median_ms(
        lambda i: torch.autograd.grad(out, leaf, seed, retain_graph=True), repeats)
    limit_ms = forward_ms + backward_ms
    rows.append((case.name, "plain torch: forward to layer", forward_ms, ""))
    rows.append((case.name, "plain torch: one backward (deconv rule)", backward_ms, "1.00x"))
    rows.append((case.name, "plain torch limit (forward + backward)", limit_ms, "1.00x"))

    probe = dv.Probe(model, input_shape=(3, case.size, case.size))
    fresh_ms = median_ms(lambda i: probe.project(images[i], layer, unit), repeats)
    rows.append((case.name, "project 1 unit, new image", fresh_ms,
                 f"{fresh_ms / limit_ms:.2f}x of limit"))
    probe.project(x, layer, unit)
    cached_ms = median_ms(lambda i: probe.project(x, layer, other), repeats)
    rows.append((case.name, "project another unit, same image", cached_ms,
                 f"{cached_ms / backward_ms:.2f}x of one backward"))
    units = list(range(min(64, probe.layer(layer).channels or 64)))
    batch_ms = median_ms(lambda i: probe.project(x, layer, units),
                         max(3, repeats // 3)) / len(units)
    rows.append((case.name, f"project {len(units)} units in one call, per unit", batch_ms,
                 f"{batch_ms / backward_ms:.2f}x of one backward"))

    try:
        from captum.attr import NeuronDeconvolution
    except ImportError:
        rows.append((case.name, "captum NeuronDeconvolution per call", float("nan"),
                     "captum not installed (pip install '.[bench]')"))
        return rows
    target = probe.activations(x, [layer])[layer][0, unit]
    where = tuple(int(v) for v in divmod(int(target.argmax()), target.shape[1]))
    captum_model = copy.deepcopy(model)
    deconv = NeuronDeconvolution(captum_model, captum_model.get_submodule(layer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captum_ms = median_ms(
            lambda i: deconv.attribute(x[None], neuron_selector=(unit, *where)), repeats)
    rows.append((case.name, "captum NeuronDeconvolution per call", captum_ms,
                 f"{captum_ms / limit_ms:.2f}x of limit; ours per unit ({len(units)} batched) is "
                 f"{captum_ms / batch_ms:.1f}x faster, cached unit change "
                 f"{captum_ms / cached_ms:.1f}x faster"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", help="run only cases whose name contains this text")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, batch of 1, "
          "deconvnet, position='max', last conv layer; medians in ms")
    print()
    print(f"| {'model':<18} | {'measurement':<42} | {'median ms':>9} | ratio |")
    print(f"|{'-' * 20}|{'-' * 44}|{'-' * 11}|-------|")
    for case in CASES:
        if args.only and args.only.lower() not in case.name.lower():
            continue
        for model, what, ms, ratio in bench_case(case, args.quick):
            print(f"| {model:<18} | {what:<42} | {ms:9.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
