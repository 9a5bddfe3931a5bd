"""Latency of a callable: median and 90th percentile after warm-up (the figures we report)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def measure_latency(fn: Callable[[], object], warmup: int = 10, runs: int = 50) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed.

    Returns:
        ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms`` and ``runs``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be positive and warmup non-negative, got {runs}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    values = np.asarray(times)
    return dict(
        median_ms=float(np.median(values)),
        p90_ms=float(np.percentile(values, 90)),
        mean_ms=float(values.mean()),
        min_ms=float(values.min()),
        runs=runs,
    )
