"""How fast Zeiler & Fergus's three analyses run: occlusion (vs captum), invariance, correspondence.

Occlusion, per image, at Fig. 7's proportions (a patch a quarter of the image side, moved by a
quarter of the patch: 13 x 13 = 169 positions), on the embedded net (64 px) and AlexNet
(224 px, random weights):

- ``dv.occlusion`` with a class target (64 occluded copies per forward; the leading
  conv / pool / ReLU chain computed only where the patch changes it), the same with
  ``local=False`` (every copy through the whole model), and with a unit target on the last
  conv layer (the forward stops there);
- captum's ``Occlusion`` on the same class probability, patch, stride and fill, at its default
  ``perturbations_per_eval=1`` (one forward per position) -- the ratio the issue asks for --
  and at ``perturbations_per_eval=64`` (captum batched like us), for reference.

Invariance: one image's curves (36 rotations, two layers plus the class probability) on the
embedded net, against a plain loop that transforms and runs one image at a time.
Correspondence: one Table-1 style table on the embedded net (5 images, 2 parts, 5 random
draws each, two layers), against a plain loop of one occluded image per forward.

Run with ``make bench`` (or ``python benchmarks/bench_analyses.py [--quick]``).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
import torchvision
from _timing import Case, median_ms
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.invariance import transform_images


def _embedded() -> nn.Module:
    return dv.demo.load().model


CASES = [
    Case("embedded net 64px", _embedded, 64, "features.conv5", 5),
    Case("AlexNet 224px", lambda: torchvision.models.alexnet(), 224, "features.10", 3),
]

Row = tuple[str, str, float, str]


def bench_occlusion(case: Case, quick: bool) -> list[Row]:
    torch.manual_seed(0)
    model = case.build().eval()
    repeats = 1 if quick else case.repeats
    patch, stride = case.size // 4, case.size // 16
    images = [torch.rand(3, case.size, case.size) for _ in range(repeats + 2)]
    target = int(model(images[0][None]).argmax())
    positions = len(range(0, case.size - patch + stride, stride)) ** 2

    def ours(i: int) -> dv.OcclusionMap:
        return dv.occlusion(model, images[i], target=target, patch=patch, stride=stride)

    ours_ms = median_ms(ours, repeats, warmup=1)
    plain_ms = median_ms(lambda i: dv.occlusion(model, images[i], target=target, patch=patch,
                                                stride=stride, local=False), repeats)
    unit_ms = median_ms(lambda i: dv.occlusion(model, images[i], target=(case.layer, "max"),
                                               patch=patch, stride=stride), repeats)
    label = f"{positions} positions, patch {patch}, stride {stride}"
    rows: list[Row] = [
        (case.name, f"dv.occlusion class target ({label})", ours_ms, "1.00x"),
        (case.name, "dv.occlusion class target, local=False (whole model per copy)", plain_ms,
         f"{plain_ms / ours_ms:.2f}x of local"),
        (case.name, f"dv.occlusion unit target ({case.layer}, stops there)", unit_ms,
         f"{unit_ms / ours_ms:.2f}x of class target"),
    ]
    try:
        from captum.attr import Occlusion
    except ImportError:
        rows.append((case.name, "captum Occlusion", float("nan"),
                     "captum not installed (pip install '.[bench]')"))
        return rows
    captum = Occlusion(lambda x: torch.softmax(model(x), dim=1))

    def theirs(i: int, per_eval: int) -> torch.Tensor:
        image = images[i]
        fill = image.mean(dim=(1, 2), keepdim=True).expand_as(image)
        with torch.no_grad():
            return captum.attribute(image[None], sliding_window_shapes=(3, patch, patch),
                                    strides=(1, stride, stride), baselines=fill[None],
                                    target=target, perturbations_per_eval=per_eval)

    default_ms = median_ms(lambda i: theirs(i, 1), repeats)
    batched_ms = median_ms(lambda i: theirs(i, 64), repeats)
    rows.append((case.name, "captum Occlusion, default perturbations_per_eval=1", default_ms,
                 f"ours {default_ms / ours_ms:.2f}x faster"))
    rows.append((case.name, "captum Occlusion, perturbations_per_eval=64", batched_ms,
                 f"ours {batched_ms / ours_ms:.2f}x faster"))
    return rows


def bench_invariance(quick: bool) -> list[Row]:
    demo = dv.demo.load()
    model = demo.model.eval()
    images, labels = demo.dataset.batch(range(6))
    layers = ["features.relu1", "classifier.relu6"]
    values = list(range(0, 360, 10))
    repeats = 1 if quick else 5

    def ours(i: int) -> dv.Invariance:
        k = i % 6
        return dv.invariance(model, images[k:k + 1], transform="rotate", values=values,
                             layers=layers, labels=labels[k:k + 1])

    captured: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out.flatten(1).clone()))
        for name in layers]

    def loop(i: int) -> None:
        k = i % 6
        with torch.no_grad():
            probs = model(images[k:k + 1]).softmax(1)
            reference = dict(captured)
            for value in values:
                moved = transform_images(images[k:k + 1], "rotate", float(value))
                probs = model(moved).softmax(1)
                _ = [float((captured[n] - reference[n]).norm()) for n in layers]
                _ = float(probs[0, labels[k]])

    try:
        loop_ms = median_ms(loop, repeats, warmup=1)
    finally:
        for handle in handles:
            handle.remove()
    ours_ms = median_ms(ours, repeats, warmup=1)
    what = f"one image, {len(values)} rotations, 2 layers + probability"
    return [("embedded net 64px", f"dv.invariance ({what})", ours_ms, "1.00x"),
            ("embedded net 64px", "plain loop, one transformed image per forward", loop_ms,
             f"ours {loop_ms / ours_ms:.2f}x faster")]


def bench_correspondence(quick: bool) -> list[Row]:
    demo = dv.demo.load()
    model = demo.model.eval()
    ds = demo.dataset
    index = [i for i in range(200) if int(ds.labels[i]) == ds.classes.index("cross")][:5]
    images, _ = ds.batch(index)
    boxes = ds.boxes(index)
    half = boxes.clone()
    half[:, 2] = (boxes[:, 0] + boxes[:, 2]) // 2
    parts = {"object": boxes, "left half": half}
    layers = ["features.relu3", "features.relu5"]
    repeats = 1 if quick else 5

    def ours(_i: int) -> dv.Correspondence:
        return dv.correspondence(model, images, parts, layers=layers, n_random=5)

    result = ours(0)
    sets = [result.masks[p] for p in parts] + [m for p in parts for m in result.random_masks[p]]
    fill = images.mean(dim=(2, 3))
    stages = {"features.relu3": model.features[:8], "features.relu5": model.features[:12]}

    def loop(_i: int) -> None:
        with torch.no_grad():
            clean = {n: stages[n](model.normalize(images)).flatten(1) for n in layers}
            for masks in sets:
                signs = {n: [] for n in layers}
                for k in range(len(index)):
                    occluded = torch.where(torch.from_numpy(masks[k]), fill[k, :, None, None],
                                           images[k])
                    for n in layers:
                        out = stages[n](model.normalize(occluded[None])).flatten(1)
                        signs[n].append((clean[n][k] - out[0]).sign())
                for n in layers:
                    pairs = itertools.combinations(signs[n], 2)
                    _ = [float((a != b).float().mean()) for a, b in pairs]

    ours_ms = median_ms(ours, repeats, warmup=1)
    loop_ms = median_ms(loop, repeats)
    what = "5 images, 2 parts x (1 + 5 random), 2 layers"
    return [("embedded net 64px", f"dv.correspondence ({what})", ours_ms, "1.00x"),
            ("embedded net 64px", "plain loop, one occluded image per forward", loop_ms,
             f"ours {loop_ms / ours_ms:.2f}x faster")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat each")
    parser.add_argument("--only", help="run only rows of cases whose name contains this text")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, random inputs; "
          "medians in ms per call")
    print()
    print(f"| {'model':<18} | {'measurement':<66} | {'median ms':>9} | ratio |")
    print(f"|{'-' * 20}|{'-' * 68}|{'-' * 11}|-------|")
    groups: list[tuple[str, Callable[[], list[Row]]]] = [
        *((case.name, lambda case=case: bench_occlusion(case, args.quick)) for case in CASES),
        ("embedded net 64px", lambda: bench_invariance(args.quick)),
        ("embedded net 64px", lambda: bench_correspondence(args.quick)),
    ]
    for name, group in groups:
        if args.only and args.only.lower() not in name.lower():
            continue
        for model, what, ms, ratio in group():
            print(f"| {model:<18} | {what:<66} | {ms:9.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
