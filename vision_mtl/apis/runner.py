"""Config loading and Runner construction behind ``tools/train.py`` and ``tools/test.py``.

The tools only parse arguments; everything they do lives here so tests reach it.
"""

from __future__ import annotations

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
from vision_mtl.utils import resolve_checkpoint, write_json  # noqa: F401 (API)


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
