"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass
class Case:
    """A model to benchmark: how to build it (random weights), its input size, the layer
    measured, and how many timed calls (where the script uses a fixed count)."""

    name: str
    build: Callable[[], nn.Module]
    size: int
    layer: str
    repeats: int = 0


def median_ms(fn: Callable[[int], Any], repeats: int, warmup: int = 0) -> float:
    """Median wall time of ``fn(i)`` over ``repeats`` calls, in milliseconds, after ``warmup``
    untimed calls (given negative indices)."""
    for i in range(warmup):
        fn(-1 - i)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def interleaved_ms(fns: Sequence[Callable[[int], Any]], repeats: int, warmup: int = 1
                   ) -> list[float]:
    """Median wall time in ms of each ``fn(i)``, the functions called in turn each round (so a
    busy machine slows them alike), after ``warmup`` untimed rounds (negative indices)."""
    for i in range(warmup):
        for fn in fns:
            fn(-1 - i)
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn(i)
            times[k].append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]
