"""How fast the histogram tab updates, and what the weight-randomization sanity check costs.

Histogram (issue 14, "histogram update time"), on the embedded net (64 px):

- ``probe_histogram`` over a 300-image probe set (what the tab computes once per epoch and
  layer) for the largest layer (conv1, 24 x 32 x 32 values per image) and the last conv layer,
  against the plain way: one forward of the whole set, then ``numpy.histogram`` of all values;
- ``image_histogram`` of one image in those bins (what an image change costs in the core);
- the dashboard's histogram tab, kernel side, from the trait change to the bqplot traits set:
  on an image change (one forward pass) and on a layer change (the probe set scanned again).

Sanity check: ``sanity_check`` (copy sharing the untouched weights, re-initialize, project)
and the whole cascade (one check per depth), against the plain way (deep-copy the whole model,
reset, a fresh probe, project), on the embedded net and on AlexNet (224 px, random weights).

The compared rows are timed interleaved (one call of each per round). Run with ``make bench``
(or ``python benchmarks/bench_histogram.py [--quick]``).
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torchvision
from _timing import interleaved_ms
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.histogram import image_histogram, probe_histogram
from ipydeepvis.core.sanity import randomizable_layers, sanity_cascade, sanity_check
from ipydeepvis.widgets.histogram import HistogramPane

Row = tuple[str, str, float, str]


def plain_histogram(model: nn.Module, images: torch.Tensor, layer: str, bins: int
                    ) -> np.ndarray:
    """One forward of the whole set with a hook, then numpy.histogram of every value."""
    out = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return np.histogram(out[0].double().numpy(), bins=bins)[0]


def bench_histogram(quick: bool) -> list[Row]:
    demo = dv.demo.load()
    model = demo.model.eval()
    images = demo.dataset.batch(list(range(300)))[0]
    repeats = 1 if quick else 5
    rows: list[Row] = []
    for layer in ("features.conv1", "features.conv5"):
        ours, plain = interleaved_ms([
            lambda i, layer=layer: probe_histogram(model, layer, images, bins=40),
            lambda i, layer=layer: plain_histogram(model, images, layer, 40),
        ], repeats)
        rows += [("embedded net 64px", f"probe_histogram {layer}, 300 images, 40 bins", ours,
                  "1.00x"),
                 ("embedded net 64px", f"plain: one forward of 300 + np.histogram, {layer}",
                  plain, f"{plain / ours:.2f}x")]
    edges = probe_histogram(model, "features.conv5", images, bins=40).edges  # type: ignore[union-attr]
    kept = dv.Probe(model)
    with_model, with_probe = interleaved_ms([
        lambda i: image_histogram(model, "features.conv5", images[(2 * i) % 300], edges),
        lambda i: image_histogram(kept, "features.conv5", images[(2 * i + 1) % 300], edges),
    ], 3 if quick else 20)
    rows += [("embedded net 64px", "image_histogram conv5, new image, a Probe built per call",
              with_model, ""),
             ("embedded net 64px", "image_histogram conv5, new image, a kept Probe (the tab)",
              with_probe, "")]

    view = dv.DeepVis(model, demo.dataset, max_images=16, threaded=False,
                      panes=(HistogramPane,))
    pane = view.panes["histogram"]
    view.show_tab("histogram")  # the tab follows the selection while shown
    count = len(view._images)

    def change_image(i: int) -> None:
        view.image_index = (view.image_index + 1) % count

    def change_layer(i: int) -> None:
        view.layer = "features.conv4" if view.layer == "features.conv5" else "features.conv5"
        pane.probes.clear()  # as on a first visit of the layer
        pane.cache.clear()

    image_ms, layer_ms = interleaved_ms([change_image, change_layer], 3 if quick else 15)
    view.close()
    rows += [("embedded net 64px", "histogram tab, image change (trait -> bqplot bars set)",
              image_ms, ""),
             ("embedded net 64px", "histogram tab, layer change (16-image probe set scanned)",
              layer_ms, "")]
    return rows


def plain_sanity(model: nn.Module, x: torch.Tensor, layer: str, unit: int,
                 names: list[str], order: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain way: a fresh probe for the trained projection; deep-copy the whole model,
    reset the layers, a fresh probe, project."""
    trained = dv.Probe(model).project(x, layer, unit)[0]
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    with torch.random.fork_rng(devices=[]):
        for name in names:
            torch.manual_seed(order.index(name))
            modules[name].reset_parameters()
    return trained, dv.Probe(clone).project(x, layer, unit)[0]


def bench_sanity_case(name: str, model: nn.Module, size: int, layer: str, depth: str,
                      quick: bool) -> list[Row]:
    torch.manual_seed(0)
    x = torch.rand(3, size, size)
    order = randomizable_layers(dv.Probe(model), x)
    names = list(reversed(order[order.index(depth):]))
    repeats = 1 if quick else (5 if size == 64 else 3)
    ours, plain = interleaved_ms([
        lambda i: sanity_check(model, x, layer, 0, depth=depth),
        lambda i: plain_sanity(model, x, layer, 0, names, order),
    ], repeats)
    (cascade,) = interleaved_ms([lambda i: sanity_cascade(model, x, layer, 0)],
                                1 if quick else 3, warmup=0)
    below = order.index(depth) + 1  # the layers with weights at or below the unit
    return [(name, f"sanity_check cascading to {depth} (trained + randomized projection)",
             ours, "1.00x"),
            (name, "plain: fresh probe; deepcopy whole model, reset, fresh probe, project",
             plain, f"{plain / ours:.2f}x"),
            (name, f"sanity_cascade {layer}: all {below} depths", cascade, "")]


def bench_sanity(quick: bool) -> list[Row]:
    return [*bench_sanity_case("embedded net 64px", dv.demo.load().model.eval(), 64,
                               "features.conv5", "features.conv5", quick),
            *bench_sanity_case("AlexNet 224px", torchvision.models.alexnet().eval(), 224,
                               "features.10", "features.10", quick)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat each")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print()
    print(f"| {'model':<18} | {'measurement':<72} | {'median ms':>9} | ratio |")
    print(f"|{'-' * 20}|{'-' * 74}|{'-' * 11}|-------|")
    for rows in (bench_histogram(args.quick), bench_sanity(args.quick)):
        for model, what, ms, ratio in rows:
            print(f"| {model:<18} | {what:<72} | {ms:9.2f} | {ratio:>5} |", flush=True)


if __name__ == "__main__":
    main()
