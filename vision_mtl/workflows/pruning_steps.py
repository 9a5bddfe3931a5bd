"""The steps around pruning: evaluate, save a restorable checkpoint, fine-tune, time.

The run that strings them together is :mod:`vision_mtl.workflows.prune`; its report, :mod:`.report`.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import tempfile
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vision_mtl.compress.pruning import PruningError
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
    model: torch.nn.Module, record: dict, path: str | os.PathLike, dataset_meta: dict | None = None
) -> Path:
    """A state_dict plus the pruning record in ``meta`` (no pickled modules), written atomically."""
    buffer = io.BytesIO()
    meta = dict(pruning=record, dataset_meta=dict(dataset_meta or {}))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), buffer)
    path = Path(path)
    atomic_write_bytes(buffer.getvalue(), path)
    return path


_LENGTHS = ("T_max", "step_size", "total_steps")  # scheduler lengths in iterations


def _shares(lengths: list[int], iters: int, minimum: int) -> list[int]:
    """``iters`` split over segments in proportion to ``lengths``, each at least ``minimum``.

    Largest remainders first; needs ``iters >= minimum * len(lengths)``.
    """
    ideal = [n * iters / sum(lengths) for n in lengths]
    shares = [max(minimum, int(q)) for q in ideal]
    while sum(shares) < iters:  # hand out what flooring left, largest remainder first
        k = max(range(len(shares)), key=lambda i: ideal[i] - shares[i])
        shares[k] += 1
    while sum(shares) > iters:  # the minimum overspent: take from the most overpaid
        over = [i for i in range(len(shares)) if shares[i] > minimum]
        shares[min(over, key=lambda i: ideal[i] - shares[i])] -= 1
    return shares


def _segments(points: set[int], original: int, iters: int) -> dict[int, int]:
    """Each schedule boundary of the ``original``-iteration run mapped into ``[0, iters]``.

    Consecutive boundaries cut the run into segments; each segment gets a whole number of the
    ``iters`` iterations in proportion to its original length, and at least two: mmengine's
    chainable schedulers take their first value at ``begin`` and their last at ``end - 1``,
    so a one-iteration warm-up applies its start factor and never lifts it (the whole run
    would train at 1% of the rate). With fewer than two iterations per segment, only the
    longest segments (as many as fit) keep iterations; the others get none.
    """
    bounds = sorted(points | {0, original})
    lengths = [b - a for a, b in pairwise(bounds)]
    kept = sorted(range(len(lengths)), key=lambda i: -lengths[i])[: max(1, iters // 2)]
    minimum = 2 if iters >= 2 * len(kept) else 1
    given = dict(zip(kept, _shares([lengths[i] for i in kept], iters, minimum), strict=True))
    mapped, total = {bounds[0]: 0}, 0
    for i, bound in enumerate(bounds[1:]):
        total += given.get(i, 0)
        mapped[bound] = total
    return mapped


def _schedulers(cfg: Config) -> list:
    """The config's ``param_scheduler`` as a list of scheduler dicts.

    Raises:
        PruningError: schedulers per optimizer (a dict of lists): not rescaled here.
    """
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict) and "type" not in schedulers:
        raise PruningError(
            "param_scheduler holds schedulers per optimizer (a dict of lists); fine-tuning "
            "rescales a single list of schedulers only"
        )
    return list(schedulers) if isinstance(schedulers, list) else [schedulers]


def scale_schedulers(schedulers: list, original: int, iters: int) -> list:
    """Iteration schedulers of an ``original``-iteration run rescaled to ``iters`` iterations.

    ``begin``/``end`` go through :func:`_segments`: every scheduler keeps ``end > begin``
    (at least two iterations while ``iters`` allows) within ``[0, iters]``, and schedulers
    that met (one's ``end`` the next one's ``begin``) still meet, however short the run (a
    warm-up of 50 of 800 iterations rounded to 0 before, which mmengine refuses). A scheduler
    left with no iteration (only when ``iters`` is below two per phase) is dropped, with a
    warning, as is one that began after the original run ended. Lengths (``T_max``,
    ``step_size``, ``total_steps``) and ``milestones`` scale with their scheduler's span and stay
    at least 1.

    Raises:
        PruningError: a scheduler that counts epochs (mmengine's default ``by_epoch=True``).
    """
    for scheduler in schedulers:
        if scheduler.get("by_epoch", True):
            raise PruningError(
                f"param_scheduler {scheduler.get('type')!r} counts epochs (by_epoch is not "
                "False); fine-tuning rescales an iteration schedule, so set by_epoch=False"
            )

    def clamp(point) -> int:
        return min(max(int(point), 0), original)

    spans = [(clamp(s.get("begin", 0)), clamp(s.get("end", original))) for s in schedulers]
    mapped = _segments({p for span in spans for p in span}, original, iters)
    scaled = []
    for scheduler, (begin, end) in zip(schedulers, spans, strict=True):
        new_begin, new_end = mapped[begin], mapped[end]
        if new_end <= new_begin:
            print_log(
                f"fine-tuning for {iters} iteration(s) drops param_scheduler "
                f"{scheduler.get('type')!r} (iterations {begin}-{end} of {original}): "
                "no iteration is left for it",
                logger="current",
                level=logging.WARNING,
            )
            continue
        scheduler = copy.deepcopy(scheduler)
        factor = (new_end - new_begin) / (end - begin)
        if "begin" in scheduler:
            scheduler["begin"] = new_begin
        if scheduler.get("end") is not None:
            scheduler["end"] = new_end
        for key in _LENGTHS:
            if scheduler.get(key) is not None:
                scheduler[key] = max(1, round(scheduler[key] * factor))
        if scheduler.get("milestones") is not None:
            scheduler["milestones"] = [max(1, round(m * factor)) for m in scheduler["milestones"]]
        scaled.append(scheduler)
    return scaled


def finetune_config(
    cfg: Config, record: dict | None, checkpoint: Path, iters: int, work_dir: Path
) -> Config:
    """``cfg`` set to fine-tune the pruned checkpoint for ``iters`` iterations.

    The schedule's iteration boundaries are scaled from the original length to ``iters`` by
    :func:`scale_schedulers` (a warm-up of 50 of 800 iterations stays about 1/16 of the run,
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
    _schedulers(cfg)
    cfg = copy.deepcopy(cfg)
    cfg.model.pruning = record
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    schedulers = _schedulers(cfg)
    if schedulers:
        cfg.param_scheduler = scale_schedulers(schedulers, original, iters)
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
                for s in _schedulers(tuned)
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
