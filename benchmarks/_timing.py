"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


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
