"""Config loading and Runner construction behind ``tools/train.py`` and ``tools/test.py``.

The tools only parse arguments; everything they do lives here so tests reach it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from vision_mtl.apis.config import check_override_keys, load_config  # noqa: F401 (API)
from vision_mtl.apis.inference import without_pretrained
from vision_mtl.engine import register_all_modules
from vision_mtl.engine.distributed import prepare_cpu_distributed
from vision_mtl.engine.runner import VisionMTLRunner
from vision_mtl.engine.workdir_lock import WorkDirLock, WorkDirLockHook
from vision_mtl.utils import atomic_write_bytes, resolve_checkpoint


def _set_launcher(cfg: Config, launcher: str) -> None:
    """Record the launcher; without CUDA, torchrun runs use gloo and a CPU DDP wrapper."""
    import torch

    cfg.launcher = launcher
    if launcher == "pytorch" and not torch.cuda.is_available():
        prepare_cpu_distributed(cfg)
    elif launcher != "none" and not torch.cuda.is_available():
        raise RuntimeError(f"--launcher {launcher} needs CUDA here; use --launcher pytorch on CPU")


def build_train_runner(
    cfg: Config,
    resume: str | bool = False,
    amp: bool = False,
    launcher: str = "none",
    strict_load: bool = True,
) -> Runner:
    """A Runner ready to ``train()``, holding the work dir's lock until the run ends.

    Args:
        cfg: the loaded config.
        resume: ``True`` resumes from the work directory's ``last_checkpoint`` and fails if there
            is none; ``"auto"`` resumes when there is one and starts afresh otherwise; a path
            resumes from that checkpoint; ``False`` starts afresh.
        amp: train with automatic mixed precision (needs a CUDA device).
        launcher: ``none``, ``pytorch``, ``slurm`` or ``mpi`` (distributed training).
        strict_load: load ``load_from`` / the resumed checkpoint strictly (the default);
            ``False`` is a deliberate partial load.
    """
    register_all_modules()
    _set_launcher(cfg, launcher)
    check_optimizer_settings(cfg)
    if amp:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--amp needs a CUDA device; this machine has none")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if cfg.optim_wrapper.get("type", "OptimWrapper") == "OptimWrapper":
        cfg.optim_wrapper.type = "GuardedOptimWrapper"  # the same wrapper plus the NaN check
    cfg.resume, checkpoint = _resume_checkpoint(cfg, resume)
    if checkpoint is not None:
        cfg.load_from = checkpoint
    lock = WorkDirLock(cfg.work_dir).acquire()
    try:
        runner = VisionMTLRunner.from_cfg(cfg)
    except BaseException:
        lock.release()
        raise
    runner.strict_load = strict_load
    runner.register_hook(WorkDirLockHook(lock))
    return runner


def check_optimizer_settings(cfg: Config) -> None:
    """Refuse a learning rate that cannot train, before anything is built.

    The parameters are float32: a rate beyond float32's range (or not a number at all) would
    fail inside the optimizer's first step with "value cannot be converted to type float
    without overflow".
    """
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    if "lr" not in optimizer:
        return
    lr = optimizer["lr"]
    largest = float(np.finfo(np.float32).max)
    valid = isinstance(lr, (int, float)) and not isinstance(lr, bool)
    if not valid or not (0 < float(lr) <= largest):
        raise ValueError(
            f"optim_wrapper.optimizer.lr must be a positive number no larger than float32's "
            f"maximum {largest:.3g}, got {lr!r}"
        )


def _resume_checkpoint(cfg: Config, resume: str | bool) -> tuple[bool, str | None]:
    """(``cfg.resume``, checkpoint to resume) for the ``resume`` argument.

    Without a ``resume`` argument the config's own ``resume = True`` (with ``load_from`` as the
    checkpoint, or the work dir's latest) is honoured the same way.
    """
    if (resume is False or resume is None) and cfg.get("resume"):
        resume = cfg.get("load_from") or True
    if resume is False or resume is None:
        return False, None
    if resume is True or resume == "auto":
        pointer = Path(cfg.work_dir) / "last_checkpoint"
        if pointer.is_file():
            return True, resolve_checkpoint(pointer)
        if resume == "auto":
            print_log(f"--resume auto: no checkpoint in {cfg.work_dir!r}, starting afresh")
            return False, None
        raise FileNotFoundError(
            f"--resume: nothing to resume in work dir {cfg.work_dir!r} (it has no "
            "last_checkpoint); name a checkpoint with --resume PATH, or use --resume auto to "
            "start afresh when there is none"
        )
    return True, resolve_checkpoint(resume)


def build_test_runner(
    cfg: Config,
    checkpoint: str,
    launcher: str = "none",
    extra_hooks: list | None = None,
    strict_load: bool = True,
) -> Runner:
    """A Runner ready to ``test()`` the weights in ``checkpoint``, already loaded (strictly,
    unless ``strict_load`` is ``False``) so a checkpoint that does not fit fails here."""
    register_all_modules()
    _set_launcher(cfg, launcher)
    without_pretrained(cfg)  # the checkpoint holds every weight
    cfg.load_from = None
    cfg.resume = False
    if extra_hooks:
        cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + list(extra_hooks)
    runner = VisionMTLRunner.from_cfg(cfg)
    runner.strict_load = strict_load
    runner.load_checkpoint(resolve_checkpoint(checkpoint))
    return runner


def json_safe(data):
    """``data`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _non_finite(data, prefix: str = "") -> dict[str, str]:
    """``key path → 'nan' | 'inf' | '-inf'`` for every non-finite float in ``data``."""
    found = {}
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            found.update(_non_finite(value, name + "."))
        elif isinstance(value, float) and not math.isfinite(value):
            found[name] = str(value)
    return found


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as strict JSON through a temporary file (never a partial file).

    A non-finite number (a metric that is undefined, e.g. NaN when no pixel is valid) is
    written as ``null``, and its original value is listed under ``"non_finite"`` (key path →
    ``"nan"``/``"inf"``/``"-inf"``), so strict parsers read the file and nothing is hidden.
    """
    non_finite = _non_finite(data)
    safe = json_safe(data)
    if non_finite:
        if "non_finite" in safe:
            raise KeyError("write_json: 'non_finite' is reserved for the non-finite values list")
        safe["non_finite"] = non_finite
    text = json.dumps(safe, indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(text.encode(), path)
