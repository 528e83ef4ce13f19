"""How fast the epoch scrubber moves, on the embedded net and its shipped checkpoint series.

Medians of:

- one epoch step of the standalone ``EpochScrubber`` (first-layer filters, markers) and of the
  ``DeepVis`` dashboard following the epoch (weights loaded into its copy, forward pass, grid,
  enlarged unit, projection, PNG encoding), on a first visit (checkpoint read from disk) and on
  a cached one;
- the evolution strip after a unit change (one new unit over every epoch; and cells cached);
- the per-epoch probe-set scan (top-1 of every conv layer over 300 images) next to a plain
  ``torch.no_grad`` forward of the same images in the same batches: the plain-torch limit.

Run with ``make bench`` (or ``python benchmarks/bench_scrubber.py``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from _timing import median_ms

import ipydeepvis as dv
from ipydeepvis.core.series_analysis import SeriesAnalysis
from ipydeepvis.core.topk import top_k_many
from ipydeepvis.widgets.epochs import EpochScrubber


def first_visits(widget: Any, analysis: SeriesAnalysis, epochs: list[int]) -> float:
    """Median ms of stepping to each epoch after emptying the series analysis' caches (so the
    checkpoint is read from disk again)."""
    times = []
    for epoch in epochs:
        analysis.clear()
        start = time.perf_counter()
        widget.epoch = epoch
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    demo = dv.demo.load()
    epochs = demo.series.epochs
    probe_size, batch = 300, 64
    images = demo.dataset.batch(list(range(probe_size)))[0]
    rows: list[tuple[str, float, str]] = []

    # first visits: every step loads a checkpoint the widget has not seen yet
    scrubber = EpochScrubber(demo.series, images, probe_size=probe_size, threaded=False)
    rows.append(("scrubber step, first visit",
                 first_visits(scrubber, scrubber.analysis, epochs[:-1]), ""))
    cached = median_ms(lambda i: setattr(scrubber, "epoch", epochs[i % len(epochs)]),
                       4 * len(epochs))
    rows.append(("scrubber step, cached", cached, "target <= 100 ms"))

    view = dv.DeepVis(demo.model, images, checkpoints=demo.series, classes=demo.classes,
                      threaded=False, probe_size=probe_size)
    rows.append(("dashboard epoch step, first visit",
                 first_visits(view, view.scrubber.analysis, epochs[:-1]), ""))  # type: ignore
    dash = median_ms(lambda i: setattr(view, "epoch", epochs[i % len(epochs)]),
                     4 * len(epochs))
    rows.append(("dashboard epoch step, cached", dash, "target <= 100 ms"))

    layer = scrubber.layer
    channels = scrubber.analysis.channels[layer]

    def unit_change(i: int) -> None:  # the strip over every epoch, one unit never seen before
        scrubber.units = [(scrubber.units[0] + 1 + i) % channels]

    rows.append((f"strip after a unit change ({len(epochs)} epochs, new unit)",
                 median_ms(unit_change, min(channels - 1, 7)), ""))
    rows.append(("strip after a unit change, cached cells",
                 median_ms(lambda i: setattr(scrubber, "units", [i % 2]), 6, warmup=2), ""))
    caches = scrubber.analysis.cache_bytes

    model = demo.series.model(epochs[-1]).eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]

    def plain(_i: int) -> None:
        with torch.no_grad():
            for start in range(0, probe_size, batch):
                model(images[start:start + batch])

    def scan(_i: int) -> None:
        top_k_many(dv.Probe(model), images, convs, 1, batch_size=batch)

    plain(0)
    scan(0)
    plain_ms = median_ms(plain, 7)
    scan_ms = median_ms(scan, 7)
    rows.append(("plain torch forward, 300 images", plain_ms, "1.00x"))
    rows.append(("probe-set scan (top-1, 5 conv layers), 300 images", scan_ms,
                 f"{scan_ms / plain_ms:.2f}x of plain forward (target <= 1.1x)"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; embedded net "
          f"64 px, shipped series epochs {epochs}; medians in ms")
    print()
    print(f"| {'measurement':<52} | {'median ms':>9} | ratio / target |")
    print(f"|{'-' * 54}|{'-' * 11}|----------------|")
    for what, ms, note in rows:
        print(f"| {what:<52} | {ms:9.2f} | {note} |")
    print()
    print(f"scrubber caches after the run: {caches} bytes; bounds "
          f"{scrubber.analysis.cache_limits}")
    view.close()
    scrubber.close()


if __name__ == "__main__":
    main()
