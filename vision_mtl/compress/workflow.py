"""The steps around pruning: evaluate, save a restorable checkpoint, fine-tune, time, compare."""

from __future__ import annotations

import copy
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vision_mtl.engine.checkpoint import atomic_write_bytes
from vision_mtl.registry import METRICS, SCOPE


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, cfg: Config) -> dict[str, float]:
    """The config's test metrics of ``model`` on its test set (the loop tools/test.py runs)."""
    with DefaultScope.overwrite_default_scope(SCOPE):
        loader = Runner.build_dataloader(copy.deepcopy(cfg.test_dataloader))
        spec = cfg.test_evaluator
        metrics = [METRICS.build(m) for m in (spec if isinstance(spec, list) else [spec])]
    evaluator = Evaluator(metrics)
    evaluator.dataset_meta = loader.dataset.metainfo
    model.eval()
    for batch in loader:
        evaluator.process(data_samples=model.test_step(batch), data_batch=batch)
    return evaluator.evaluate(len(loader.dataset))


def save_pruned_checkpoint(
    model: torch.nn.Module, record: dict, path: str | os.PathLike, dataset_meta: dict | None = None
) -> Path:
    """A state_dict plus the pruning record in ``meta`` (no pickled modules), written atomically."""
    buffer = io.BytesIO()
    meta = dict(pruning=record, dataset_meta=dict(dataset_meta or {}))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), buffer)
    path = Path(path)
    atomic_write_bytes(buffer.getvalue(), path)
    return path


def finetune_config(
    cfg: Config, record: dict, checkpoint: Path, iters: int, work_dir: Path
) -> Config:
    """``cfg`` set to fine-tune the pruned checkpoint for ``iters`` iterations.

    The schedule's iteration boundaries are scaled from the original length to ``iters`` (a
    warm-up of 50 of 800 iterations stays 1/16 of the run).
    """
    cfg = copy.deepcopy(cfg)
    original = int(cfg.train_cfg.max_iters)
    cfg.model.pruning = record
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    schedulers = cfg.get("param_scheduler") or []
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        for key in ("begin", "end", "T_max"):
            if key in scheduler and scheduler[key] is not None:
                scheduler[key] = min(iters, round(scheduler[key] * iters / original))
    checkpoint_hook = cfg.get("default_hooks", {}).get("checkpoint")
    if checkpoint_hook is not None:
        checkpoint_hook["interval"] = iters
    return cfg


def finetune(cfg: Config) -> torch.nn.Module:
    """Train with the normal Runner and schedule; returns the trained (unwrapped) model."""
    from vision_mtl.apis.runner import build_train_runner

    runner = build_train_runner(cfg)
    runner.train()
    model = runner.model
    return model.module if hasattr(model, "module") else model


def ort_latency(model: torch.nn.Module, canvas: tuple[int, int], runs: int = 100) -> float:
    """Median ONNX Runtime fp32 latency (ms) of ``model`` exported at ``canvas``, batch 1."""
    from vision_mtl.export import OrtRunner, export_onnx, load_deployment
    from vision_mtl.export.timing import measure_latency

    with tempfile.TemporaryDirectory() as directory:
        exported = export_onnx(copy.deepcopy(model).cpu().eval(), Path(directory), canvas)
        runner = OrtRunner(
            load_deployment(exported.sidecar_path), providers=["CPUExecutionProvider"]
        )
        batch = np.zeros((1, 3, *canvas), np.float32)
        return measure_latency(lambda: runner.run(batch), 20, runs)["median_ms"]
