"""The table a slimmable model is judged by: several configurations of one checkpoint, each with
its widths, MACs, ONNX Runtime latency and every task metric.

Each configuration is deployed as it would be on a device: batch norms recalibrated for it
(:func:`~vision_mtl.models.slimmable.multitask.recalibrate_batch_norms`), turned into a plain
static network (:func:`~vision_mtl.models.slimmable.static.static_model`) and exported to ONNX.
The ONNX Runtime sessions are timed interleaved in one run
(:func:`~vision_mtl.export.timing.measure_interleaved`), so every configuration sees the same
machine load; the metrics are the config's test metrics of the static network on the
evaluator's validation samples.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vision_mtl.models.slimmable.search import macs_function
from vision_mtl.workflows.width_search import ConfigurationEvaluator, example_input


def benchmark_configurations(
    evaluator: ConfigurationEvaluator,
    configurations: Mapping[str, Mapping[str, float]],
    canvas: tuple[int, int],
    rounds: int = 100,
    threads: int | None = None,
    log=print,
) -> dict:
    """Widths, MACs, ORT latency, metrics and Δm (against the widest) of named configurations.

    Args:
        evaluator: the trained slimmable model with its validation and calibration data.
        configurations: name → configuration (complete or partial; missing slots widest).
        canvas: input size of the export, the MAC count and the timing (batch 1).
        rounds: timed rounds; each runs every configuration once.
        threads: ONNX Runtime intra-op threads (``None``: its default).

    Returns:
        ``canvas``, ``threads``, ``rounds`` and ``rows``: name → ``configuration``, ``macs``,
        ``latency`` (median/p90/mean/min ms), ``latency_ratio`` (median over the widest's when
        a configuration named ``full`` is present), ``metrics`` and ``delta_m``.
    """
    from vision_mtl.export import OrtRunner, export_onnx, load_deployment
    from vision_mtl.export.timing import measure_interleaved

    model = evaluator.model
    table = macs_function(model, example_input(model, canvas))
    rows: dict[str, dict] = {}
    runners = {}
    batch = np.random.default_rng(0).standard_normal((1, 3, *canvas)).astype(np.float32)
    with tempfile.TemporaryDirectory() as directory:
        for name, config in configurations.items():
            full = {**model.decoder.slim_config, **dict(config)}
            full = {k: float(v) for k, v in full.items()}
            static = evaluator.static(full, canvas)
            metrics = evaluator.evaluate(static)
            (Path(directory) / name).mkdir()
            exported = export_onnx(copy.deepcopy(static), Path(directory) / name, canvas)
            runners[name] = OrtRunner(
                load_deployment(exported.sidecar_path),
                providers=["CPUExecutionProvider"],
                threads=threads,
            )
            rows[name] = dict(
                configuration=full,
                macs=table(full),
                metrics=metrics,
                delta_m=evaluator.delta_m(metrics),
            )
            log(f"{name}: {full} {rows[name]['macs'] / 1e6:.1f}M MACs, "
                f"Δm {rows[name]['delta_m']:+.2f}")  # fmt: skip
        fns = {name: (lambda r=runner: r.run(batch)) for name, runner in runners.items()}
        timings = measure_interleaved(fns, warmup=10, rounds=rounds)
    for name, timing in timings.items():
        rows[name]["latency"] = timing
        if "full" in timings:
            rows[name]["latency_ratio"] = timing["median_ms"] / timings["full"]["median_ms"]
    return dict(canvas=list(canvas), threads=threads, rounds=rounds, rows=rows)
