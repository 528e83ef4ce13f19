"""How fast the data-set top-k scan runs, and what that means for ImageNet.

Tables (medians; one torch thread per process unless said otherwise):

1. scan vs plain forward: one batch of the top-k scan (every requested layer reduced in its
   forward hook, the forward stopped at the deepest, the running top-9 updated) next to a
   plain ``torch.no_grad`` forward of the same batch through the model's layers up to that
   deepest layer, interleaved, on the embedded net (its five ReLU layers) and on torchvision's
   AlexNet at 224 x 224 (its five conv layers). Target: ratio <= 1.05.
2. ``ipydeepvis index`` on 8,000 of the embedded default's test images (rendered once into a
   tensor file, so that the runs time the scan, not the drawing), one process vs
   ``torchrun --nproc-per-node 2``, one thread each: seconds the command reports for the scan
   (process start, imports and group set-up excluded) and wall seconds, images/s, speed-up
   (target >= 1.6x), the CPU seconds of the scan summed over the processes (the work: if two
   ranks need no more CPU time than one process, two free cores run them twice as fast) and
   whether the two indices are identical. Next to it the limit of this machine: the plain
   forward of the same batches in one process vs two independent processes at the same time
   (no scan, no communication), which is what two ranks can gain at most here (cores shared
   with other work, memory bandwidth).
3. a projection of an ImageNet scan (1.28 M images, AlexNet's five conv layers) from the
   measured AlexNet images/s per process, against deepvis's 40 h on one GPU.

Run with ``make bench`` (or ``python benchmarks/bench_topk.py [--quick]``; ``--quick`` scans
2,000 images and repeats less). On a busy machine read the CPU-time ratios: they count the
work done, not the waiting.
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
from ipydeepvis.core.topk import RunningTopK, Scanner, as_probe, resolve_layers, scan_batch

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


def interleaved(plain: Callable[[int], object], scan: Callable[[int], object], repeats: int
                ) -> tuple[float, float, float]:
    """Median wall seconds of ``plain(i)`` and ``scan(i)``, timed alternately on batch ``i``
    (after one warm-up each), and the ratio of their median CPU times (robust to a busy
    machine: one thread, so CPU time is the work done)."""
    plain(-1), scan(-1)
    wall: dict[str, list[float]] = {"plain": [], "scan": []}
    cpu: dict[str, list[float]] = {"plain": [], "scan": []}
    for i in range(repeats):
        for name, fn in (("plain", plain), ("scan", scan)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(i)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return (statistics.median(wall["plain"]), statistics.median(wall["scan"]),
            statistics.median(cpu["scan"]) / statistics.median(cpu["plain"]))


def scan_vs_plain(label: str, model: nn.Module, truncated: Callable[[torch.Tensor], object],
                  layers: list[str], batches: list[torch.Tensor], repeats: int, warm: int = 0
                  ) -> dict[str, object]:
    """One scan batch vs one plain forward, over a stream of batches, after ``warm`` untimed
    scan batches (the first batches of a scan cost more: while a unit has fewer than k
    images, every image's position is looked up)."""
    model.eval()
    probe = as_probe(model)
    names = resolve_layers(probe, layers, batches[0][:1])
    scanner = Scanner(probe, names)
    size = len(batches[0])
    running = RunningTopK(names, 9, size * (repeats + warm + 1))
    done = [0]

    def plain(i: int) -> None:
        with torch.no_grad():
            truncated(batches[i % len(batches)])

    def scan(i: int) -> None:
        start = size * done[0]
        done[0] += 1
        scan_batch(scanner, running, torch.arange(start, start + size),
                   batches[i % len(batches)])

    for i in range(warm):  # untimed: the running top-9 fills as in the bulk of a long scan
        scan(i)
    t_plain, t_scan, cpu_ratio = interleaved(plain, scan, repeats)
    return {"model": label, "batch": size, "seen before": size * (warm + 1),
            "plain ms": 1000 * t_plain,
            "scan ms": 1000 * t_scan, "ratio": t_scan / t_plain, "ratio (CPU time)": cpu_ratio,
            "scan img/s": size / t_scan}


IMAGES = "IPYDEEPVIS_BENCH_IMAGES"  # the tensor file the runs below read their images from


def images_file() -> torch.Tensor:
    """The ``--data`` factory of the runs below: the rendered images, memory-mapped (the
    processes share one copy in the page cache)."""
    return torch.load(os.environ[IMAGES], mmap=True)


def cli_run(args: list[str], ranks: int, images: str) -> tuple[float, float, float]:
    """Seconds ``ipydeepvis index`` reports for the scan (process start, imports and process
    group set-up excluded), wall seconds of the whole command, and the CPU seconds of the
    scan summed over its processes (as the command reports them)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", IMAGES: images}
    if ranks == 1:
        command = [sys.executable, "-m", "ipydeepvis", *args]
    else:
        torchrun = str(Path(sys.executable).parent / "torchrun")
        command = [torchrun, "--standalone", "--nproc-per-node", str(ranks), "-m",
                   "ipydeepvis", *args]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    found = re.search(r" in ([0-9.]+) s .* ([0-9.]+) CPU s", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1)), wall, float(found.group(2))


def plain_worker(images: str, rank: int, world: int, batch: int) -> None:
    """(A subprocess.) Plain forward of batches ``rank, rank + world, ...`` of the embedded
    net to relu5, one thread; prints the seconds it took."""
    torch.set_num_threads(1)
    zf = dv.demo.load().model.eval()
    data = torch.load(images, mmap=True)
    chunks = list(range(0, len(data), batch))[rank::world]
    print("ready", flush=True)
    sys.stdin.readline()  # all workers start together
    start, start_cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for first in chunks:
            zf.features[:12](zf.normalize(data[first:first + batch]))
    print(f"{time.perf_counter() - start:.4f} {time.process_time() - start_cpu:.4f}")


def plain_ceiling(images: str, processes: int, batch: int) -> tuple[float, float]:
    """Seconds until ``processes`` independent plain-forward workers, each taking every
    ``processes``-th batch, are all done (they start together, once all are loaded), and
    their CPU seconds summed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, __file__, "--plain-worker", images, str(rank),
                                 str(processes), str(batch)], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for rank in range(processes)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    times = [[float(v) for v in worker.communicate()[0].split()[-2:]] for worker in workers]
    return max(wall for wall, _ in times), sum(cpu for _, cpu in times)


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
    if sys.argv[1:2] == ["--plain-worker"]:
        plain_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    quick = "--quick" in sys.argv
    torch.set_num_threads(1)
    repeats = 4 if quick else 24

    demo = dv.demo.load()
    zf = demo.model
    relus = [f"features.relu{i}" for i in range(1, 6)]
    rows = []
    for size in (64, 256):
        count = max(2, (repeats * 64) // size)
        shapes = [demo.dataset.batch(list(range(size * i, size * (i + 1))))[0]
                  for i in range(min(count, len(demo.dataset) // size))]
        rows.append(scan_vs_plain("embedded ZF (5 ReLUs)", zf,
                                  lambda x: zf.features[:12](zf.normalize(x)), relus, shapes,
                                  count))
    from torchvision.models import alexnet

    alex = alexnet(weights=None)
    convs = ["features.0", "features.3", "features.6", "features.8", "features.10"]
    generator = torch.Generator().manual_seed(0)
    pictures = [torch.rand(16, 3, 224, 224, generator=generator) for _ in range(4)]
    rows.append(scan_vs_plain("AlexNet 224 (5 convs)", alex, lambda x: alex.features[:11](x),
                              convs, pictures, max(2, repeats // 3), warm=4 if quick else 16))
    print("scan vs plain forward to the deepest requested layer (1 thread, target <= 1.05):")
    print(table(rows))
    alex_ips = float(rows[-1]["scan img/s"])  # type: ignore[arg-type]

    count = 2_000 if quick else 8_000
    batch = 64
    print(f"\nipydeepvis index, embedded net, {count:,} test images, batch {batch}, 1 thread per "
          "process (scan s: as the command reports it; wall: the whole command):")
    with tempfile.TemporaryDirectory() as tmp:
        images = f"{tmp}/images.pt"
        torch.save(dv.demo.load(length=count).dataset.batch(list(range(count)))[0], images)
        args = ["index", "--model", "demo", "--data", "benchmarks.bench_topk:images_file",
                "--layers", *relus, "--k", "9", "--batch-size", str(batch), "--threads", "1",
                "--quiet"]
        runs: dict[str, list[tuple[float, float, float]]] = {"one": [], "two": []}
        plain: dict[str, list[tuple[float, float]]] = {"one": [], "two": []}
        for repeat in range(1 if quick else 2):  # interleaved: the load changes over time
            runs["one"].append(cli_run([*args, "--out", f"{tmp}/one{repeat}"], 1, images))
            runs["two"].append(cli_run([*args, "--out", f"{tmp}/two{repeat}"], 2, images))
            plain["one"].append(plain_ceiling(images, 1, batch))
            plain["two"].append(plain_ceiling(images, 2, batch))
        same = TopKIndex.load(f"{tmp}/one0").equal(TopKIndex.load(f"{tmp}/two0"))
    one, one_wall, one_cpu = (statistics.median(t) for t in zip(*runs["one"], strict=True))
    two, two_wall, two_cpu = (statistics.median(t) for t in zip(*runs["two"], strict=True))
    p_one, p_one_cpu = (statistics.median(t) for t in zip(*plain["one"], strict=True))
    p_two, p_two_cpu = (statistics.median(t) for t in zip(*plain["two"], strict=True))
    print(table([
        {"processes": "1 x 1 thread", "scan s": one, "wall s": one_wall, "CPU s": one_cpu,
         "img/s (scan)": count / one, "speed-up": 1.0, "speed-up (CPU)": 1.0,
         "identical": "-"},
        {"processes": "2 x 1 thread (torchrun, gloo)", "scan s": two, "wall s": two_wall,
         "CPU s": two_cpu, "img/s (scan)": count / two, "speed-up": one / two,
         "speed-up (CPU)": 2 * one_cpu / two_cpu, "identical": str(same)},
        {"processes": "plain forwards (no scan), 1 process", "scan s": p_one,
         "wall s": float("nan"), "CPU s": p_one_cpu, "img/s (scan)": count / p_one,
         "speed-up": 1.0, "speed-up (CPU)": 1.0, "identical": "-"},
        {"processes": "limit: plain forwards, 2 independent processes", "scan s": p_two,
         "wall s": float("nan"), "CPU s": p_two_cpu, "img/s (scan)": count / p_two,
         "speed-up": p_one / p_two, "speed-up (CPU)": 2 * p_one_cpu / p_two_cpu,
         "identical": "-"},
    ]))
    print("speed-up: of the scan's own seconds; speed-up (CPU): 2 x the CPU seconds of one "
          "process over those of both, what two free cores give when only the work counts")
    print(f"the whole scan vs the plain forwards of the same batches, CPU s: one process "
          f"{one_cpu / p_one_cpu:.3f}, two {two_cpu / p_two_cpu:.3f} (the command's time also "
          "holds the fingerprints and the index file; target <= 1.05)")
    efficiency = min(1.0, one_cpu / two_cpu)

    print(f"\nImageNet ({IMAGENET:,} images), AlexNet's five conv layers, from "
          f"{alex_ips:.1f} img/s per one-thread process; deepvis: {DEEPVIS_HOURS:.0f} h on "
          "one GPU:")
    gpu_ips = alex_ips * CORES_PER_CPU * GPU_OVER_16_CORES
    setups = [("1 CPU process (1 thread)", alex_ips),
              (f"8 CPU processes (x {efficiency:.2f} 2-rank work efficiency, CPU s)",
               8 * alex_ips * efficiency),
              ("1 GPU (6.0x a 16-core Xeon; NVIDIA 2015, assumed linear cores)", gpu_ips),
              ("8 GPUs (torchrun nccl, assumed linear)", 8 * gpu_ips)]
    print(table([{"setup": name, "img/s": ips, "hours": IMAGENET / ips / 3600,
                  "vs deepvis 40 h": DEEPVIS_HOURS / (IMAGENET / ips / 3600)}
                 for name, ips in setups]))


if __name__ == "__main__":
    main()
