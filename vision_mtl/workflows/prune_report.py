"""What a pruning run cost and gained: each stage's size, speed and metrics, and Δm between them.

A report holds one entry per stage reached (:data:`STAGES`: before pruning, after pruning,
after fine-tuning), each measured by :func:`measure_stage`: parameters, MACs (FlopCounterMode,
:func:`~vision_mtl.complexity.count_macs`), ONNX Runtime fp32 latency and every test metric.
:func:`compare_stages` adds Δm against the unpruned model, the speed-up and the MACs ratio;
:func:`write_report` writes ``report.json`` and :func:`format_report_table` the printed table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from mmengine.config import Config

from vision_mtl.apis.runner import write_json
from vision_mtl.complexity import count_macs, count_parameters
from vision_mtl.evaluation.multitask import delta_m_against, primary_key
from vision_mtl.tasks import get_task
from vision_mtl.workflows.pruning_steps import evaluate_model, ort_latency

#: The stages of a pruning run, in order; a report holds those reached.
STAGES = ("before", "pruned", "finetuned", "int8")


def measure_stage(model: torch.nn.Module, cfg: Config, canvas: tuple[int, int], runs: int) -> dict:
    """Parameters, MACs and ONNX Runtime latency at ``canvas`` (batch 1), and test metrics."""
    example = torch.zeros(1, 3, *canvas)
    return dict(
        parameters=count_parameters(model)["total"],
        macs=count_macs(model, example, mode="tensor")["total"],
        ort_latency_ms=ort_latency(model, canvas, runs),
        metrics=evaluate_model(model, cfg),
    )


def measure_int8_stage(
    model: torch.nn.Module,
    cfg: Config,
    config: str,
    canvas: tuple[int, int],
    out: Path,
    calib_samples: int,
    runs: int,
) -> dict:
    """Export ``model`` to ``out`` and INT8-quantize it there as ``tools/export.py`` and
    ``tools/quantize.py`` do; the INT8 graph's ONNX Runtime latency and test metrics (its size
    is the exported model's, already measured).

    The latency is measured as :func:`measure_stage` measures the fp32 stages (batch 1, the
    same runs), so the stages compare directly.
    """
    import numpy as np

    from vision_mtl.export import OrtRunner
    from vision_mtl.export.int8_comparison import checked_samples, evaluate
    from vision_mtl.export.parity import build_metric, sample_image
    from vision_mtl.export.timing import measure_latency
    from vision_mtl.export.verified import export_verified, quantize_verified

    fp32 = export_verified(model.cpu().eval(), out, canvas).deployment
    calibration, _ = checked_samples(cfg, config, fp32, "train", calib_samples)
    int8 = quantize_verified(fp32, [sample_image(s) for s in calibration])
    samples, metainfo = checked_samples(cfg, config, int8, "test", 10**9)
    runner = OrtRunner(int8, providers=["CPUExecutionProvider"])
    batch = np.zeros((1, 3, *canvas), np.float32)
    return dict(
        ort_latency_ms=measure_latency(lambda: runner.run(batch), 20, runs)["median_ms"],
        metrics=evaluate(runner, samples, build_metric(cfg, metainfo, "test")),
        onnx=str(int8.onnx_path),
    )


def compare_stages(report: dict, tasks: Sequence[str]) -> dict:
    """Add Δm, speed-up and MACs ratio against ``before`` to every stage so far (in place)."""
    before = report["before"]
    for stage in STAGES:
        if stage in report:
            state = report[stage]
            delta = delta_m_against(state["metrics"], before["metrics"], tasks)
            state["delta_m"] = delta["multitask/delta_m"]
            state["speedup"] = before["ort_latency_ms"] / state["ort_latency_ms"]
            state["macs_ratio"] = state["macs"] / before["macs"]
    return report


def write_report(report: dict, tasks: Sequence[str], out: str | os.PathLike) -> Path:
    """:func:`compare_stages`, then write ``out/report.json`` (atomically); returns its path."""
    compare_stages(report, tasks)
    path = Path(out) / "report.json"
    write_json(json.loads(json.dumps(report, default=float)), path)
    return path


def format_report_table(report: Mapping, tasks: Sequence[str]) -> list[str]:
    """The Markdown table ``tools/prune.py`` prints: one row per stage reached."""
    header = ["stage", "params (M)", "MACs (G)", "ORT ms", "speedup"]
    header += [f"{t} {get_task(t).primary_metric}" for t in tasks] + ["Δm"]
    lines = ["| " + " | ".join(header) + " |"]
    for stage in (stage for stage in STAGES if stage in report):
        s = report[stage]
        cells = [stage, f"{s['parameters'] / 1e6:.2f}", f"{s['macs'] / 1e9:.3f}"]
        cells += [f"{s['ort_latency_ms']:.2f}", f"{s['speedup']:.2f}x"]
        cells += [f"{s['metrics'][primary_key(t)]:.4g}" for t in tasks]
        cells.append(f"{s['delta_m']:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines
