"""How fast the embedded default opens, and what reading a checkpoint series costs.

Medians of:

- ``dv.demo.load()``: open the shipped series, rebuild the final model, draw the test set
  (the target is well under two seconds, as the README promises; the test suite asserts no
  time);
- opening the shipped series (``dv.CheckpointSeries(path)``: manifest, file list, metrics);
- ``series.load(epoch)`` (one safetensors state dict) and ``series.model(epoch)`` (a new
  module with those weights);
- opening a folder of 60 plain ``.pt`` state dicts whose epochs are read from their names,
  and the same with the epoch stored inside each file (every file is read once to tell it).

Run with ``python benchmarks/bench_checkpoints.py [--repeats R]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _timing import median_ms

import ipydeepvis as dv


def _loose_folder(root: Path, state: dict[str, torch.Tensor], *, inside: bool) -> Path:
    """60 ``.pt`` files of ``state``: epoch in the name, or only inside the file."""
    folder = root / ("inside" if inside else "named")
    folder.mkdir()
    for epoch in range(1, 61):
        if inside:
            torch.save({"epoch": epoch, "state_dict": state}, folder / f"ckpt_{epoch:02d}x.pt")
        else:
            torch.save(state, folder / f"epoch_{epoch:03d}.pt")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    path = dv.demo.series_path()
    series = dv.CheckpointSeries(path)
    last = series.epochs[-1]
    rows: list[tuple[str, float, str]] = []
    rows.append(("dv.demo.load()", median_ms(lambda i: dv.demo.load(), args.repeats, 1),
                 "target < 2000"))  # fmt: skip
    rows.append(("dv.CheckpointSeries(shipped)", median_ms(
        lambda i: dv.CheckpointSeries(path), args.repeats, 1), ""))  # fmt: skip
    rows.append((f"series.load({last})", median_ms(lambda i: series.load(last), args.repeats, 1),
                 ""))  # fmt: skip
    rows.append((f"series.model({last})",
                 median_ms(lambda i: series.model(last), args.repeats, 1), ""))  # fmt: skip
    state = series.load(last)
    with tempfile.TemporaryDirectory() as tmp:
        named = _loose_folder(Path(tmp), state, inside=False)
        inside = _loose_folder(Path(tmp), state, inside=True)
        model = series.model(last)
        rows.append(("open 60 .pt, epoch in the name", median_ms(
            lambda i: dv.CheckpointSeries(named, model=model), args.repeats, 1), ""))  # fmt: skip
        rows.append(("open 60 .pt, epoch inside the file", median_ms(
            lambda i: dv.CheckpointSeries(inside, model=model), args.repeats, 1), ""))  # fmt: skip

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; shipped series "
          f"{series.epochs}, {args.repeats} repeats")  # fmt: skip
    print()
    print(f"| {'measurement':<40} | {'median ms':>9} | note |")
    print(f"|{'-' * 42}|{'-' * 11}|------|")
    for what, ms, note in rows:
        print(f"| {what:<40} | {ms:9.2f} | {note} |")


if __name__ == "__main__":
    main()
