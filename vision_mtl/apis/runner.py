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
from vision_mtl.engine.fsdp import VisionMTLFlexibleRunner
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
    amp: bool | str = False,
    launcher: str = "none",
    strict_load: bool = True,
    strategy: str | None = None,
) -> Runner:
    """A Runner ready to ``train()``, holding the work dir's lock until the run ends.

    Args:
        cfg: the loaded config.
        resume: ``True`` resumes from the work directory's ``last_checkpoint`` and fails if there
            is none; ``"auto"`` resumes when there is one and starts afresh otherwise; a path
            resumes from that checkpoint; ``False`` starts afresh.
        amp: train with automatic mixed precision: ``True``/``"auto"`` (bf16 on the CPU, fp16
            with a dynamic loss scale on CUDA), ``"bf16"`` or ``"fp16"``
            (:func:`set_mixed_precision`).
        launcher: ``none``, ``pytorch``, ``slurm`` or ``mpi`` (distributed training).
        strict_load: load ``load_from`` / the resumed checkpoint strictly (the default);
            ``False`` is a deliberate partial load.
        strategy: ``"fsdp"`` trains with fully sharded data parallel (mmengine's FlexibleRunner
            and :class:`~vision_mtl.engine.fsdp.VisionMTLFSDPStrategy`; needs a distributed
            launcher); ``None`` uses the config's ``strategy`` if it has one, else mmengine's
            Runner (DDP when distributed).
    """
    register_all_modules()
    use_fsdp = _use_fsdp(cfg, strategy, launcher)
    _set_launcher(cfg, launcher)
    check_optimizer_settings(cfg)
    if amp:
        set_mixed_precision(cfg, "auto" if amp is True else amp)
    if use_fsdp:
        _check_fsdp_precision(cfg)
    if cfg.optim_wrapper.get("type", "OptimWrapper") == "OptimWrapper":
        cfg.optim_wrapper.type = "GuardedOptimWrapper"  # the same wrapper plus the NaN check
    cfg.resume, checkpoint = _resume_checkpoint(cfg, resume)
    if checkpoint is not None:
        cfg.load_from = checkpoint
    if cfg.get("load_from") and strict_load:
        without_pretrained(cfg)  # a strict load replaces every weight: fetch no backbone weights
    check_sync_bn(cfg, launcher)
    lock = WorkDirLock(cfg.work_dir).acquire()
    try:
        runner_class = VisionMTLFlexibleRunner if use_fsdp else VisionMTLRunner
        runner = runner_class.from_cfg(cfg)
    except BaseException:
        lock.release()
        raise
    runner.strict_load = strict_load
    runner.register_hook(WorkDirLockHook(lock))
    return runner


def _use_fsdp(cfg: Config, strategy: str | None, launcher: str) -> bool:
    """Whether this run trains with FSDP; ``cfg.strategy`` set to the FSDP strategy if so."""
    if strategy not in (None, "fsdp"):
        raise ValueError(f"--strategy must be 'fsdp' (or absent), got {strategy!r}")
    configured = cfg.get("strategy")
    if strategy is None and configured is None:
        return False
    if configured is None:
        cfg.strategy = dict(type="vision_mtl.VisionMTLFSDPStrategy")
    kind = str(cfg.strategy.get("type", "")).rsplit(".", 1)[-1]
    if kind != "VisionMTLFSDPStrategy":
        raise ValueError(
            f"strategy.type={kind!r}: the toolbox trains with 'VisionMTLFSDPStrategy' (FSDP "
            "with full checkpoints that load into the plain model) or without a strategy (DDP)"
        )
    if launcher == "none":
        raise ValueError(
            "FSDP shards the model across processes: start with a launcher, e.g. "
            "python -m torch.distributed.run --nproc_per_node=N tools/train.py CONFIG "
            "--launcher pytorch --strategy fsdp"
        )
    if cfg.get("sync_bn"):
        raise ValueError("sync_bn is a DDP setting; FSDP runs do not convert BatchNorm layers")
    return True


def _check_fsdp_precision(cfg: Config) -> None:
    """Refuse a loss-scaled optimizer wrapper under FSDP.

    A loss scaler decides per process whether its gradients overflowed; with sharded gradients
    one process would skip a step the others take (torch's ShardedGradScaler is what FSDP needs),
    and mmengine's AmpOptimWrapper clips each shard by its own norm. bf16 needs no scaler.
    """
    wrapper = cfg.optim_wrapper
    kind = str(wrapper.get("type", "OptimWrapper")).rsplit(".", 1)[-1]
    if kind == "AmpOptimWrapper" or wrapper.get("loss_scale") is not None:
        raise ValueError(
            f"optim_wrapper {kind} with loss_scale={wrapper.get('loss_scale')!r} under FSDP: "
            "fp16 loss scaling is not supported with sharded gradients; use --amp bf16 "
            "(no loss scale) or train without --amp"
        )


def check_sync_bn(cfg: Config, launcher: str) -> None:
    """Refuse a ``sync_bn`` setting that cannot work, before anything is built.

    mmengine converts BatchNorm layers to SyncBatchNorm when ``sync_bn='torch'`` and the run is
    distributed; torch's SyncBatchNorm runs on GPUs only, so a CPU run would fail in its first
    forward pass.
    """
    import torch

    sync_bn = cfg.get("sync_bn")
    if sync_bn is None:
        return
    if sync_bn != "torch":
        raise ValueError(f"sync_bn must be 'torch' (torch's SyncBatchNorm), got {sync_bn!r}")
    if launcher == "none":
        print_log("sync_bn='torch' has no effect in a single-process run", logger="current")
    elif not torch.cuda.is_available():
        raise ValueError(
            "sync_bn='torch': torch's SyncBatchNorm runs on CUDA devices only; drop sync_bn for "
            "CPU runs (each process then normalizes its own batch)"
        )


#: optimizer wrappers ``--amp`` may replace: the plain ones (any other is the user's own choice)
_PLAIN_WRAPPERS = ("OptimWrapper", "GuardedOptimWrapper")
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def set_mixed_precision(cfg: Config, precision: str = "auto") -> None:
    """Make ``cfg``'s optimizer wrapper run the forward passes under autocast.

    fp16 on CUDA (``auto`` there) is mmengine's ``AmpOptimWrapper`` with a dynamic loss scale.
    bf16 needs no loss scale (it has fp32's exponent range) and mmengine's wrapper refuses to
    start without a GPU, so bf16 (``auto`` on the CPU) and fp16 on the CPU run
    :class:`~vision_mtl.engine.optim.AutocastOptimWrapper`: autocast with the finite-gradient
    check kept (fp16 adds torch's GradScaler). Parameters, gradients, optimizer state and the
    losses (:meth:`~vision_mtl.models.MultiTaskModel.loss`) stay fp32 in every case.

    Raises:
        ValueError: an unknown ``precision``, or a config whose optimizer wrapper is neither
            a plain one nor already a mixed-precision one (``--amp`` would replace it).
    """
    import torch

    if precision not in ("auto", *AMP_DTYPES):
        raise ValueError(f"--amp must be one of auto, bf16, fp16; got {precision!r}")
    wrapper = cfg.optim_wrapper
    given = str(wrapper.get("type", "OptimWrapper")).rsplit(".", 1)[-1]
    amp_types = ("AmpOptimWrapper", "AutocastOptimWrapper")
    if given not in _PLAIN_WRAPPERS + amp_types:
        raise ValueError(
            f"--amp: optim_wrapper.type={given!r} is not a plain optimizer wrapper "
            f"({', '.join(_PLAIN_WRAPPERS)}) that --amp could replace; configure mixed "
            "precision in that wrapper instead"
        )
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "fp16" if cuda else "bf16"
    wrapper.dtype = AMP_DTYPES[precision]
    wrapper.setdefault("loss_scale", "dynamic" if precision == "fp16" else None)
    if cuda and precision == "fp16" and wrapper.loss_scale is not None:
        wrapper.type = "AmpOptimWrapper"
    else:  # bf16 anywhere, fp16 on the CPU: mmengine's wrapper refuses either
        wrapper.type = "vision_mtl.AutocastOptimWrapper"
    print_log(
        f"--amp: {precision} autocast on {'CUDA' if cuda else 'the CPU'} "
        f"({wrapper.type}, loss_scale={wrapper.loss_scale!r})",
        logger="current",
    )


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
