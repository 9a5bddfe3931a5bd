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


def measure_interleaved(
    fns: dict[str, Callable[[], object]], warmup: int = 10, rounds: int = 50
) -> dict[str, dict[str, float]]:
    """Time several callables in one run, alternating them so load changes hit all alike.

    Each round calls every callable once, starting one further along each round (so none is
    always first after another's cache effects).

    Returns:
        Name → ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms`` and ``runs``.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be positive and warmup non-negative, got {rounds}, {warmup}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            start = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    out = {}
    for name, values in times.items():
        values = np.asarray(values)
        out[name] = dict(
            median_ms=float(np.median(values)),
            p90_ms=float(np.percentile(values, 90)),
            mean_ms=float(values.mean()),
            min_ms=float(values.min()),
            runs=rounds,
        )
    return out
