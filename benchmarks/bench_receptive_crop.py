"""What cropping the projection to the receptive field costs the dashboard (issue 12.7).

Per case (the embedded net at conv1 and conv5, AlexNet at conv5 with random weights), against
what a unit change costs anyway, the projection of the unit's strongest activation from the
recorded forward pass:

- the seed's field when the layer is new (the all-ones float64 surrogate recorded up to the
  layer, then one backward pass: ``ReceptiveField.seed_box`` on a fresh instance);
- the field at a new position of a layer already recorded (one backward pass);
- the field again (the cache: what every later visit of the (layer, position) costs);
- drawing: the cropped projection and the input patch (``render.field_picture`` twice) against
  the whole-image picture enlarged to 192 px.

The measurements are interleaved (one of each per round), so a busy machine slows them alike.
Run with ``make bench`` (or ``python benchmarks/bench_receptive_crop.py [--quick]``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from _timing import Case, interleaved_ms

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.core.receptive import ReceptiveField

CASES = [
    Case("embedded 64px conv1", lambda: dv.demo.load().model, 64, "features.conv1"),
    Case("embedded 64px conv5", lambda: dv.demo.load().model, 64, "features.conv5"),
    Case("AlexNet 224px conv5", lambda: torchvision.models.alexnet(), 224, "features.10"),
]


def bench(case: Case, rounds: int) -> list[tuple[str, str, float, str]]:
    torch.manual_seed(0)
    model = case.build().eval()
    shape = (3, case.size, case.size)
    probe = dv.Probe(model, input_shape=shape)
    image = torch.rand(shape)
    maps = probe.activations(image, [case.layer])[case.layer][0]
    units = list(range(min(8, maps.shape[0])))
    height, width = maps.shape[1:]
    cells = [(r, c) for r in range(height) for c in range(width)]
    warm = ReceptiveField(probe, shape)
    warm.seed_box(case.layer, maps[0], "max")
    cached = ReceptiveField(probe, shape)
    cached.seed_box(case.layer, maps[0], "max")
    projection = probe.project(image, case.layer, 0)[0]
    picture = render.projection_picture(projection)
    shown = render.image_to_uint8(image)
    box = cached.seed_box(case.layer, maps[0], "max")

    fns: dict[str, Callable[[int], Any]] = {
        "project the unit's max (recorded pass)":
            lambda i: probe.project(image, case.layer, units[i % len(units)]),
        "field, new layer (surrogate pass + backward)":
            lambda i: ReceptiveField(probe, shape).seed_box(case.layer, maps[0], "max"),
        "field, new position of a recorded layer (backward)":
            lambda i: warm.box(case.layer, cells[(7 * i + 11) % len(cells)]),
        "field, cached (layer, position)":
            lambda i: cached.seed_box(case.layer, maps[0], "max"),
        "draw: whole picture at 192 px":
            lambda i: render.to_rgba(render.resize_nearest(picture, 192, 192)),
        f"draw: cropped projection + input patch ({box.height}x{box.width})":
            lambda i: (render.field_picture(picture, box, 94),
                       render.field_picture(shown, box, 94)),
    }
    ms = dict(zip(fns, interleaved_ms(list(fns.values()), rounds), strict=True))
    base = ms["project the unit's max (recorded pass)"]
    rows = []
    for name, value in ms.items():
        ratio = "1.00x" if value == base else f"{value / base:.3f}x the projection"
        rows.append((case.name, name, value, ratio))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 15")
    args = parser.parse_args()
    rounds = 3 if args.quick else 15
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, random inputs; "
          f"medians of {rounds} interleaved rounds, ms per call")
    print()
    print(f"| {'case':<20} | {'measurement':<52} | {'median ms':>9} | ratio |")
    print(f"|{'-' * 22}|{'-' * 54}|{'-' * 11}|-------|")
    for case in CASES:
        for model, what, value, ratio in bench(case, rounds):
            print(f"| {model:<20} | {what:<52} | {value:9.3f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
