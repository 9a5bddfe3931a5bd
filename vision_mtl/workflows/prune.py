"""One pruning run, from config and checkpoint to pruned checkpoints and a report.

:func:`prune_workflow` is what ``tools/prune.py`` runs, callable from Python::

    from vision_mtl.workflows.prune import PruneSettings, prune_workflow

    result = prune_workflow("configs/...py", "work_dirs/.../iter_800.pth",
                            PruneSettings(ratio=0.3, out="work_dirs/pruned", finetune_iters=200))
    result.report["finetuned"]["delta_m"], result.model

Every setting, config key and the checkpoint are checked first (:mod:`.settings`): pruning and
evaluation take minutes, and a bad setting must not cost them, nor leave a file behind.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.config import Config

from vision_mtl.apis.runner import load_config
from vision_mtl.compress.greedy import greedy_prune
from vision_mtl.compress.pruning import prune
from vision_mtl.utils import resolve_checkpoint
from vision_mtl.workflows.prune_report import measure_int8_stage, measure_stage, write_report
from vision_mtl.workflows.prune_settings import (
    PruneSettings,
    check_config,
    check_settings,
    load_unpruned_model,
)
from vision_mtl.workflows.pruning_steps import finetune, finetune_config, save_pruned_checkpoint

__all__ = ["PruneResult", "PruneSettings", "prune_workflow"]


@dataclass
class PruneResult:
    """What :func:`prune_workflow` leaves: the report (as written), the tasks and the model."""

    report: dict
    tasks: list[str]
    model: torch.nn.Module


def loader_batches(loader_cfg, count: int) -> list[dict]:
    """The first ``count`` batches of a config's data loader."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from vision_mtl.registry import SCOPE

    with DefaultScope.overwrite_default_scope(SCOPE):
        loader = Runner.build_dataloader(copy.deepcopy(loader_cfg))
    batches = []
    for batch in loader:
        if len(batches) >= count:
            break
        batches.append(batch)
    return batches


def _prune(model, cfg, settings, canvas, patterns, layer_ratios, log) -> dict:
    """Prune ``model`` in place as ``settings`` say; returns the pruning record."""
    example = torch.zeros(1, 3, *canvas)
    grad_batches = []
    if settings.needs_gradients:
        grad_batches = loader_batches(cfg.train_dataloader, settings.grad_batches)
    round_to = settings.round_to or None
    if settings.greedy:
        return greedy_prune(
            model,
            example,
            settings.ratio,
            loader_batches(cfg.val_dataloader, settings.val_batches),
            budget=settings.greedy_budget,
            step=settings.greedy_step,
            protected=patterns,
            round_to=round_to,
            rank=settings.greedy_rank,
            grad_batches=grad_batches,
            log=log,
        )
    return prune(
        model,
        example,
        settings.ratio,
        importance=settings.importance,
        global_pruning=settings.global_pruning,
        iterative_steps=settings.iterative_steps,
        protected=patterns,
        batches=grad_batches,
        layer_ratios=layer_ratios,
        round_to=round_to,
        head_ratio=settings.head_ratio,
    )


def prune_workflow(
    config: str | os.PathLike | Config,
    checkpoint: str | os.PathLike,
    settings: PruneSettings,
    cfg_options: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> PruneResult:
    """Measure, prune, save, measure, then fine-tune, save and measure again; report each stage.

    Writes ``out/pruned.pth`` (state_dict + pruning record, before fine-tuning),
    ``out/pruned_finetuned.pth`` (after ``settings.finetune_iters`` iterations of the config's
    schedule scaled to that length; its Runner work dir is ``out/finetune``) and
    ``out/report.json``, after pruning and again after fine-tuning (:mod:`.prune_report`);
    with ``settings.quantize``, the final model exported and INT8-quantized in ``out/export``
    and the report's ``int8`` stage.

    Args:
        config: a config file (``cfg_options`` applied) or a loaded ``Config``.
        checkpoint: the unpruned model's checkpoint.
        settings: the run's settings (``tools/prune.py``'s flags).
        cfg_options: ``--cfg-options`` overrides for a config file.
        log: called with one line per group by greedy pruning.

    Raises:
        PruningError: a bad setting, a config key a phase needs, no input size, a checkpoint
            that does not fit, or a model that cannot be pruned; nothing is written.
        FileNotFoundError: the config or checkpoint does not exist.
    """
    layer_ratios = check_settings(settings)
    if isinstance(config, Config):
        cfg, name = copy.deepcopy(config), str(config.filename or "<config>")
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    else:
        cfg, name = load_config(config, cfg_options), str(config)
    resolve_checkpoint(checkpoint)
    canvas = check_config(cfg, name, settings)
    model, patterns = load_unpruned_model(cfg, name, checkpoint, settings, layer_ratios)
    out, runs = Path(settings.out), settings.latency_runs
    report = dict(config=name, checkpoint=str(checkpoint), ratio=settings.ratio)
    report["before"] = measure_stage(model, cfg, canvas, runs)
    record = _prune(model, cfg, settings, canvas, patterns, layer_ratios, log)
    out.mkdir(parents=True, exist_ok=True)
    dataset_meta = model.dataset_meta
    pruned_path = save_pruned_checkpoint(model, record, out / "pruned.pth", dataset_meta)
    report["pruned"] = measure_stage(model, cfg, canvas, runs)
    report["record"] = {k: v for k, v in record.items() if k != "history"}
    tasks = list(model.tasks)
    write_report(report, tasks, out)  # kept even if fine-tuning fails
    if settings.finetune_iters:
        tuned = finetune_config(cfg, record, pruned_path, settings.finetune_iters, out / "finetune")
        model = finetune(tuned, dataset_meta)
        save_pruned_checkpoint(model, record, out / "pruned_finetuned.pth", dataset_meta)
        report["finetuned"] = measure_stage(model, cfg, canvas, runs)
        write_report(report, tasks, out)
    if settings.quantize:  # the final model through export and quantization, unchanged
        last = report["finetuned" if settings.finetune_iters else "pruned"]
        report["int8"] = dict(
            parameters=last["parameters"],
            macs=last["macs"],
            **measure_int8_stage(
                model, cfg, name, canvas, out / "export", settings.calib_samples, runs
            ),
        )
        write_report(report, tasks, out)
    return PruneResult(report, tasks, model)
