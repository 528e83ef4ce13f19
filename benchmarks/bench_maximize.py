"""How fast ``dv.maximize`` steps, next to a plain torch loop and torch-lucent, in one run.

For each case (model, layer, image size; random weights, unit 3 at the centre) the variants
below run interleaved, ``repeats`` times each, and the table gives the median time per step
(the marginal cost: a call of ``steps`` steps minus a call of one step, divided by
``steps - 1``; the one-step call's time, setup included, is given too):

- plain torch: a hook that stops the forward at the layer, ``autograd.grad`` from the unit to
  the image, ``x = clamp(x + lr * g)``: no regularizer, no history, no copy -- the least any
  implementation does; and the same loop on a channels-last image (``dv.maximize`` steps
  channels-last images on the CPU: this row shows how much of its lead over the plain loop is
  that layout, and how much is a lean loop);
- ours with no regularizer, with preset 3's (decay + blur every 4), and Lucid-style (FFT,
  decorrelated colour, jitter / scale / rotation);
- torch-lucent's ``render_vis`` at the same size and steps (its defaults: FFT + decorrelation,
  standard transforms, Adam; it runs the whole model, hooks every module, backpropagates into
  the weights' ``.grad`` too, and upsamples images smaller than 224 px to 224 px, so its 64 px
  row optimizes at 224 px); its standard transforms pad by 12 px and scale by up to 1.1, so
  at 224 px it runs the model on images of about 250 to 270 px. A second lucent row runs
  without transforms (``transforms=[]``: the image the model sees is the requested size, at
  least 224 px), the closest lucent gets to the plain loop;
- ours with 16 units in one batch, per unit-step, against one unit.

The embedded net's classifier only takes 64 px images, so lucent (which always runs the whole
model, at 224 px at least) gets its feature extractor; ours stops at the layer anyway.

Run with ``make bench`` (or ``python benchmarks/bench_maximize.py [--quick] [--only NAME]
[--threads N]``). On a busy machine, ``--threads 1`` times the thread's CPU time
(``time.thread_time``) instead of the wall clock, which other processes disturb far less.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn

import ipydeepvis as dv

IMAGENET = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
UNIT = 3


@dataclass
class Case:
    name: str
    build: Callable[[], tuple[nn.Module, nn.Module, Any]]  # (model, lucent model, preprocess)
    size: int
    layer: str
    lucent_layer: str
    steps: int
    repeats: int


def _embedded() -> tuple[nn.Module, nn.Module, Any]:
    model = dv.demo.load().model
    features = nn.Sequential(OrderedDict(normalize=model.normalize, features=model.features))
    return model, features, None


def _alexnet() -> tuple[nn.Module, nn.Module, Any]:
    model = torchvision.models.alexnet(weights=None).eval()
    return model, model, IMAGENET


CASES = [
    Case("embedded 64px", _embedded, 64, "features.conv5", "features_conv5", 50, 7),
    Case("embedded 224px", _embedded, 224, "features.conv5", "features_conv5", 20, 5),
    Case("AlexNet 224px", _alexnet, 224, "features.10", "features_10", 20, 5),
]


class _Stop(Exception):
    pass


def plain_loop(model: nn.Module, layer: str, preprocess: Any, size: int, steps: int,
               channels_last: bool = False) -> None:
    """Gradient ascent on one unit with nothing else: the floor for any implementation."""
    net = copy.deepcopy(model).eval()
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        captured.append(out)
        raise _Stop

    net.get_submodule(layer).register_forward_hook(hook)
    x = torch.full((1, 3, size, size), 0.5)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(steps):
        leaf = x.requires_grad_(True)
        captured.clear()
        try:
            net(preprocess(leaf) if preprocess is not None else leaf)
        except _Stop:
            pass
        out = captured[0]
        value = out[0, UNIT, out.shape[2] // 2, out.shape[3] // 2]
        (g,) = torch.autograd.grad(value, leaf)
        x = (leaf.detach() + 0.01 * g).clamp(0, 1)  # the valid range, as every loop needs


def lucent_run(model: nn.Module, layer: str, size: int, steps: int, preprocess: bool,
               transforms: list[Any] | None = None) -> None:
    from lucent.optvis import param, render

    try:
        render.render_vis(model, f"{layer}:{UNIT}", lambda: param.image(size),
                          thresholds=(steps,), transforms=transforms, preprocess=preprocess,
                          progress=False, show_image=False)
    finally:
        # render_vis leaves a hook on every module; without this, each call would run all
        # the earlier calls' hooks too and lucent would slow down through the benchmark
        for module in model.modules():
            module._forward_hooks.clear()


def bench_case(case: Case, quick: bool) -> list[tuple[str, str, float, str]]:
    torch.manual_seed(0)
    model, lucent_model, preprocess = case.build()
    # lucent leaves a hook on every module (holding the last outputs, non-leaf tensors that
    # cannot be deep-copied): give it its own copy so ours and the plain loop stay clean
    lucent_model = copy.deepcopy(lucent_model)
    steps = max(5, case.steps // (2 if quick else 1))
    repeats = max(3, case.repeats // (2 if quick else 1))
    common = dict(size=case.size, preprocess=preprocess)
    variants: dict[str, Callable[[int], Any]] = {
        "plain torch loop (no regularizer)":
            lambda n: plain_loop(model, case.layer, preprocess, case.size, n),
        "plain torch loop, channels-last image":
            lambda n: plain_loop(model, case.layer, preprocess, case.size, n, True),
        "ours, no regularizer":
            lambda n: dv.maximize(model, case.layer, UNIT, lr_policy="constant", steps=n,
                                  **common),
        "ours, preset 3 (decay, blur/4)":
            lambda n: dv.maximize(model, case.layer, UNIT, preset=3, steps=n, **common),
        "ours, Lucid-style (fft, decorr., transforms)":
            lambda n: dv.maximize(model, case.layer, UNIT, param="fft", decorrelate=True,
                                  jitter=8, scale=0.1, rotate=10.0, steps=n, **common),
        "ours, 16 units in one batch, per unit":
            lambda n: dv.maximize(model, case.layer, list(range(16)), preset=3, steps=n,
                                  **common),
    }
    lucent_error = ""
    try:
        import lucent  # noqa: F401
    except ImportError:
        lucent_error = "torch-lucent not installed (pip install '.[bench]')"
    if not lucent_error:
        variants["torch-lucent render_vis"] = lambda n: lucent_run(
            lucent_model, case.lucent_layer, case.size, n, preprocess is not None)
        variants["torch-lucent render_vis, no transforms"] = lambda n: lucent_run(
            lucent_model, case.lucent_layer, case.size, n, preprocess is not None, [])
    long: dict[str, list[float]] = {name: [] for name in variants}
    short: dict[str, list[float]] = {name: [] for name in variants}
    for name, run in variants.items():  # warm-up
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(2)
        except Exception as exc:  # a peer that cannot run this case
            if not name.startswith("torch-lucent"):
                raise
            long.pop(name)
            lucent_error = f"{type(exc).__name__}: {exc}"[:80]
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    for _ in range(repeats):  # interleaved: every variant, a long and a one-step call
        for name in long:
            for n, store in ((steps, long), (1, short)):
                start = clock()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    variants[name](n)
                store[name].append(clock() - start)
    # per step = the marginal cost of a step: (call of `steps` - call of 1) / (steps - 1)
    ms = {name: 1000 * (statistics.median(t) - statistics.median(short[name])) / (steps - 1)
          for name, t in long.items()}
    setup = {name: 1000 * statistics.median(short[name]) for name in long}
    ms["ours, 16 units in one batch, per unit"] /= 16
    plain = ms["plain torch loop (no regularizer)"]
    plain_cl = ms["plain torch loop, channels-last image"]
    ours3 = ms["ours, preset 3 (decay, blur/4)"]
    ours_lucid = ms["ours, Lucid-style (fft, decorr., transforms)"]
    single = ours3
    rows = []
    for name, value in ms.items():
        if name == "plain torch loop (no regularizer)":
            ratio = "1.00x"
        elif name.startswith("plain"):
            ratio = f"{value / plain:.2f}x of plain"
        elif name.startswith("ours, 16"):
            ratio = f"{value / single:.2f}x of one unit (preset 3)"
        elif name.startswith("ours"):
            ratio = f"{value / plain:.2f}x of plain, {value / plain_cl:.2f}x of channels-last"
        else:
            ratio = (f"{value / ours3:.1f}x ours preset 3, {value / ours_lucid:.1f}x ours "
                     f"Lucid-style; {value / plain:.1f}x plain")
        rows.append((case.name, name, value, f"{ratio}; one-step call {setup[name]:.0f} ms"))
    if lucent_error:
        rows.append((case.name, "torch-lucent render_vis", float("nan"), lucent_error))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--only", help="run only cases whose name contains this text")
    parser.add_argument("--threads", type=int, help="torch threads (1: time thread CPU time)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = "thread CPU time" if torch.get_num_threads() == 1 else "wall clock"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, random weights, "
          f"unit {UNIT} at the centre; median ms per step (marginal, {clock}), interleaved")
    print()
    print(f"| {'case':<15} | {'variant':<44} | {'ms/step':>8} | ratio |")
    print(f"|{'-' * 17}|{'-' * 46}|{'-' * 10}|-------|")
    for case in CASES:
        if args.only and args.only.lower() not in case.name.lower():
            continue
        for name, what, value, ratio in bench_case(case, args.quick):
            print(f"| {name:<15} | {what:<44} | {value:8.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
