"""Is a Shapes training epoch dominated by generating its images? (issue 3)

Measures, per 10,000 images (the default training set):

- rendering ``Shapes`` images in batches of 256 (``Shapes.batch``), and
- one training epoch's compute on already-rendered images: forward, backward and AdamW step
  of the embedded ZF-style net at batch size 64, channels-last, as ``ipydeepvis train`` does.

Each figure is the median of ``--repeats`` timed runs over ``--images`` images (scaled to
10k), for 1 thread and for torch's default thread count. The last column is rendering's
share of a whole epoch (render + compute). Target: well below one half.

Run with ``python benchmarks/bench_shapes.py [--images N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ipydeepvis.data import Shapes
from ipydeepvis.models import build_model

PER = 10_000


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _render(ds: Shapes, n: int) -> Callable[[], None]:
    def run() -> None:
        for s in range(0, n, 256):
            ds.batch(range(s, min(s + 256, n)))

    return run


def _train_compute(n: int) -> Callable[[], None]:
    model = build_model("zf", generator=torch.Generator().manual_seed(0))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = Shapes("train", n).batch(range(n))
    images = images.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        for s in range(0, n, 64):
            loss = F.cross_entropy(model(images[s : s + 64]), labels[s : s + 64])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure")
    args = parser.parse_args()

    default_threads = torch.get_num_threads()
    ds = Shapes("train", args.images, seed=0)
    scale = PER / args.images
    rows = []
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        render = _median_seconds(_render(ds, args.images), args.repeats) * scale
        compute = _median_seconds(_train_compute(args.images), args.repeats) * scale
        rows.append((threads, render, compute, render / (render + compute)))
    torch.set_num_threads(default_threads)

    print(f"Shapes 64x64, ZF-style net; seconds per {PER:,} images (median of {args.repeats})")
    print(f"{'threads':>7}  {'render':>8}  {'train compute':>13}  {'render share':>12}")
    for threads, render, compute, share in rows:
        print(f"{threads:>7}  {render:>8.2f}  {compute:>13.2f}  {share:>12.0%}")


if __name__ == "__main__":
    main()
