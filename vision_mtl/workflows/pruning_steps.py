"""The steps around pruning: evaluate, save a restorable checkpoint, fine-tune, time.

The run that strings them together is :mod:`vision_mtl.workflows.prune`; its report, :mod:`.report`.
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vision_mtl.compress.pruning import PruningError
from vision_mtl.engine.schedules import ScheduleError, config_schedulers, scale_schedulers
from vision_mtl.registry import METRICS, SCOPE
from vision_mtl.utils import atomic_write_bytes


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
    model: torch.nn.Module,
    record: dict,
    path: str | os.PathLike,
    dataset_meta: dict | None = None,
    qat: dict | None = None,
) -> Path:
    """A state_dict plus the pruning record (and a QAT record) in ``meta`` (no pickled
    modules), written atomically."""
    buffer = io.BytesIO()
    meta = dict(pruning=record, dataset_meta=dict(dataset_meta or {}))
    if qat is not None:
        meta["qat"] = qat
    torch.save(dict(state_dict=model.state_dict(), meta=meta), buffer)
    path = Path(path)
    atomic_write_bytes(buffer.getvalue(), path)
    return path


def finetune_config(
    cfg: Config, record: dict | None, checkpoint: Path, iters: int, work_dir: Path
) -> Config:
    """``cfg`` set to fine-tune the pruned checkpoint for ``iters`` iterations.

    The schedule's iteration boundaries are scaled from the original length to ``iters`` by
    :func:`vision_mtl.engine.schedules.scale_schedulers` (a warm-up of 50 of 800 iterations stays about 1/16 of the run,
    and at least two iterations while the run has two for each phase).

    Raises:
        PruningError: ``iters`` below 1, a config without an iteration-based ``train_cfg``
            (``max_iters``), ``optim_wrapper`` or ``train_dataloader``, or an epoch schedule.
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise PruningError(f"fine-tuning needs at least 1 iteration, got {iters!r}")
    original = (cfg.get("train_cfg") or {}).get("max_iters")
    if isinstance(original, bool) or not isinstance(original, int) or original < 1:
        raise PruningError(
            f"fine-tuning rescales the config's iteration schedule, but train_cfg.max_iters is "
            f"{original!r}, not a positive integer (an iteration-based train_cfg is needed)"
        )
    for key in ("optim_wrapper", "train_dataloader"):
        if not cfg.get(key):
            raise PruningError(f"fine-tuning needs the config key {key!r}, which is not set")
    try:
        config_schedulers(cfg)
    except ScheduleError as err:
        raise PruningError(str(err)) from None
    cfg = copy.deepcopy(cfg)
    cfg.model.pruning = record
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    schedulers = config_schedulers(cfg)
    if schedulers:
        try:
            cfg.param_scheduler = scale_schedulers(schedulers, original, iters)
        except ScheduleError as err:
            raise PruningError(str(err)) from None
    checkpoint_hook = cfg.get("default_hooks", {}).get("checkpoint")
    if checkpoint_hook is not None:
        checkpoint_hook["interval"] = iters
    return cfg


def check_finetune(cfg: Config, iters: int) -> list:
    """Build and run the fine-tuning schedule for ``iters`` iterations on a stand-in parameter.

    The tool calls this before pruning, so a schedule mmengine would refuse (or one that
    fails while stepping) stops the run in seconds instead of after the pruning. The
    optimizer wrapper is the config's own; the model is a one-weight layer.

    Returns:
        the built mmengine parameter schedulers (stepped through the whole run).

    Raises:
        PruningError: as :func:`finetune_config`, or mmengine cannot build or step the
            optimizer or a scheduler.
    """
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    tuned = finetune_config(cfg, None, Path("pruned.pth"), iters, Path("finetune"))
    try:
        with DefaultScope.overwrite_default_scope(SCOPE), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scheduler.step() without optimizer.step()
            wrapper = build_optim_wrapper(torch.nn.Linear(1, 1), copy.deepcopy(tuned.optim_wrapper))
            schedulers = [  # the Runner's default end is the run's last iteration
                PARAM_SCHEDULERS.build(
                    dict(s, end=s.get("end", iters)), default_args=dict(optimizer=wrapper)
                )
                for s in config_schedulers(tuned)
            ]
            for _ in range(iters):
                for scheduler in schedulers:
                    scheduler.step()
    except (ValueError, TypeError, KeyError, ZeroDivisionError, AssertionError) as err:
        raise PruningError(
            f"the fine-tuning schedule for {iters} iterations cannot run: "
            f"{type(err).__name__}: {err}"
        ) from None
    return schedulers


def finetune(cfg: Config, dataset_meta: dict | None = None) -> torch.nn.Module:
    """Train with the normal Runner and schedule; returns the trained (unwrapped) model with
    ``cfg`` and ``dataset_meta`` attached, as ``init_model`` attaches them (the exporters read
    both: the validation set for parity, class names for the sidecar)."""
    from vision_mtl.apis.runner import build_train_runner

    runner = build_train_runner(cfg)
    runner.train()
    model = runner.model
    model = model.module if hasattr(model, "module") else model
    model.cfg, model.dataset_meta = cfg, dataset_meta
    return model


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
