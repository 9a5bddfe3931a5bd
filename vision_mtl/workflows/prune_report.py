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
STAGES = ("before", "pruned", "finetuned")


def measure_stage(model: torch.nn.Module, cfg: Config, canvas: tuple[int, int], runs: int) -> dict:
    """Parameters, MACs and ONNX Runtime latency at ``canvas`` (batch 1), and test metrics."""
    example = torch.zeros(1, 3, *canvas)
    return dict(
        parameters=count_parameters(model)["total"],
        macs=count_macs(model, example, mode="tensor")["total"],
        ort_latency_ms=ort_latency(model, canvas, runs),
        metrics=evaluate_model(model, cfg),
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
