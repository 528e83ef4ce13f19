"""How fast the data-set top-k scan runs, and what that means for ImageNet.

Tables (medians; one torch thread per process unless said otherwise):

1. scan vs plain forward: one batch of the top-k scan (every requested layer reduced in its
   forward hook, the forward stopped at the deepest, the running top-9 updated) next to a
   plain ``torch.no_grad`` forward of the same batch through the model's layers up to that
   deepest layer, interleaved, on the embedded net (its five ReLU layers) and on torchvision's
   AlexNet at 224 x 224 (its five conv layers). Target: ratio <= 1.05.
2. ``ipydeepvis index`` on the embedded default's 2,000 test images, one process vs
   ``torchrun --nproc-per-node 2``, one thread each: images/s, speed-up (target >= 1.6x) and
   whether the two indices are identical.
3. a projection of an ImageNet scan (1.28 M images, AlexNet's five conv layers) from the
   measured AlexNet images/s per process, against deepvis's 40 h on one GPU.

Run with ``make bench`` (or ``python benchmarks/bench_topk.py [--quick]``).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.index import TopKIndex
from ipydeepvis.core.topk import LayerScan, Scanner, as_probe, resolve_layers, scan_batch

IMAGENET = 1_281_167
DEEPVIS_HOURS = 40.0
# NVIDIA, "GPU-Based Deep Learning Inference: A Performance and Power Analysis" (whitepaper,
# Nov. 2015; summarised in the NVIDIA developer blog post "Inference: The Next Step in
# GPU-Accelerated Deep Learning"): a GeForce GTX Titan X runs AlexNet / GoogLeNet inference
# 5.3x to 6.7x faster than a 16-core Intel Xeon E5-2698 v3. We take the midpoint, 6.0, and
# ASSUME the 16 cores scale linearly from one of ours: one GPU ~ 6.0 x 16 one-thread processes.
GPU_OVER_16_CORES = 6.0
CORES_PER_CPU = 16
ROOT = Path(__file__).resolve().parents[1]


def interleaved(plain: Callable[[], object], scan: Callable[[], object], repeats: int
                ) -> tuple[float, float]:
    """Median seconds of ``plain`` and ``scan``, timed alternately (after one warm-up each)."""
    plain(), scan()
    times: dict[str, list[float]] = {"plain": [], "scan": []}
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("scan", scan)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["plain"]), statistics.median(times["scan"])


def scan_vs_plain(label: str, model: nn.Module, truncated: Callable[[torch.Tensor], object],
                  layers: list[str], images: torch.Tensor, repeats: int) -> dict[str, object]:
    model.eval()
    probe = as_probe(model)
    names = resolve_layers(probe, layers, images[:1])
    scanner = Scanner(probe, names)
    running = {n: LayerScan(n, 9, len(images)) for n in names}
    indices = torch.arange(len(images))

    def plain() -> None:
        with torch.no_grad():
            truncated(images)

    def scan() -> None:
        scan_batch(scanner, running, indices, images)

    t_plain, t_scan = interleaved(plain, scan, repeats)
    return {"model": label, "batch": len(images), "plain ms": 1000 * t_plain,
            "scan ms": 1000 * t_scan, "ratio": t_scan / t_plain,
            "scan img/s": len(images) / t_scan}


def cli_run(args: list[str], ranks: int) -> float:
    """Seconds ``ipydeepvis index`` reports for the scan (process start-up excluded)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if ranks == 1:
        command = [sys.executable, "-m", "ipydeepvis", *args]
    else:
        torchrun = str(Path(sys.executable).parent / "torchrun")
        command = [torchrun, "--standalone", "--nproc-per-node", str(ranks), "-m",
                   "ipydeepvis", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"in ([0-9.]+) s", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def table(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    cells = [[f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys]
             for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = [" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> None:
    quick = "--quick" in sys.argv
    torch.set_num_threads(1)
    repeats = 3 if quick else 15

    demo = dv.demo.load()
    zf = demo.model
    relus = [f"features.relu{i}" for i in range(1, 6)]
    shapes = demo.dataset.batch(list(range(64)))[0]
    rows = [scan_vs_plain("embedded ZF (5 ReLUs)", zf,
                          lambda x: zf.features[:12](zf.normalize(x)), relus, shapes, repeats)]
    from torchvision.models import alexnet

    alex = alexnet(weights=None)
    convs = ["features.0", "features.3", "features.6", "features.8", "features.10"]
    pictures = torch.rand(16, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rows.append(scan_vs_plain("AlexNet 224 (5 convs)", alex, lambda x: alex.features[:11](x),
                              convs, pictures, max(2, repeats // 3)))
    print("scan vs plain forward to the deepest requested layer (1 thread, target <= 1.05):")
    print(table(rows))
    alex_ips = float(rows[1]["scan img/s"])  # type: ignore[arg-type]

    print("\nipydeepvis index, embedded default, 2,000 images, 1 thread per process:")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["index", "--model", "demo", "--data", "demo", "--layers", *relus, "--k", "9",
                "--batch-size", "50", "--threads", "1", "--quiet"]
        one = cli_run([*args, "--out", f"{tmp}/one"], 1)
        two = cli_run([*args, "--out", f"{tmp}/two"], 2)
        same = TopKIndex.load(f"{tmp}/one").equal(TopKIndex.load(f"{tmp}/two"))
    n = len(demo.dataset)
    print(table([{"processes": "1 x 1 thread", "s": one, "img/s": n / one, "speed-up": 1.0,
                  "identical": "-"},
                 {"processes": "2 x 1 thread (torchrun, gloo)", "s": two, "img/s": n / two,
                  "speed-up": one / two, "identical": str(same)}]))
    efficiency = min(1.0, (one / two) / 2)

    print(f"\nImageNet ({IMAGENET:,} images), AlexNet's five conv layers, from "
          f"{alex_ips:.1f} img/s per one-thread process; deepvis: {DEEPVIS_HOURS:.0f} h on "
          "one GPU:")
    gpu_ips = alex_ips * CORES_PER_CPU * GPU_OVER_16_CORES
    setups = [("1 CPU process (1 thread)", alex_ips),
              (f"8 CPU processes (x {efficiency:.2f} measured 2-rank efficiency)",
               8 * alex_ips * efficiency),
              ("1 GPU (6.0x a 16-core Xeon; NVIDIA 2015, assumed linear cores)", gpu_ips),
              ("8 GPUs (torchrun nccl, assumed linear)", 8 * gpu_ips)]
    print(table([{"setup": name, "img/s": ips, "hours": IMAGENET / ips / 3600,
                  "vs deepvis 40 h": DEEPVIS_HOURS / (IMAGENET / ips / 3600)}
                 for name, ips in setups]))


if __name__ == "__main__":
    main()
