"""Config loading and Runner construction behind ``tools/train.py`` and ``tools/test.py``.

The tools only parse arguments; everything they do lives here so tests reach it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmengine.config import Config
from mmengine.runner import Runner

from vision_mtl.engine.checkpoint import atomic_write_bytes
from vision_mtl.engine.distributed import prepare_cpu_distributed


def load_config(
    config: str | os.PathLike,
    cfg_options: dict | None = None,
    work_dir: str | None = None,
) -> Config:
    """Read a config file, apply ``--cfg-options`` overrides and set the work directory.

    The work directory defaults to ``work_dirs/<config stem>`` as in mmsegmentation.
    """
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    return cfg


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
) -> Runner:
    """A Runner ready to ``train()``.

    Args:
        cfg: the loaded config.
        resume: ``True`` resumes from the work directory's ``last_checkpoint``; a path resumes
            from that checkpoint; ``False`` starts afresh.
        amp: train with automatic mixed precision (needs a CUDA device).
        launcher: ``none``, ``pytorch``, ``slurm`` or ``mpi`` (distributed training).
    """
    _set_launcher(cfg, launcher)
    if amp:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--amp needs a CUDA device; this machine has none")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if isinstance(resume, str):
        cfg.resume, cfg.load_from = True, resolve_checkpoint(resume)
    elif resume:
        cfg.resume = True
    return Runner.from_cfg(cfg)


def build_test_runner(
    cfg: Config, checkpoint: str, launcher: str = "none", extra_hooks: list | None = None
) -> Runner:
    """A Runner ready to ``test()`` the weights in ``checkpoint``."""
    _set_launcher(cfg, launcher)
    cfg.load_from = resolve_checkpoint(checkpoint)
    cfg.resume = False
    if extra_hooks:
        cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + list(extra_hooks)
    return Runner.from_cfg(cfg)


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """The checkpoint file ``path`` names; a ``last_checkpoint`` file is followed to its target."""
    path = Path(path)
    if path.is_dir():
        path = path / "last_checkpoint"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.name == "last_checkpoint":
        target = Path(path.read_text().strip())
        if not target.is_file():  # a moved or copied work dir: look beside the pointer
            target = path.parent / target.name
        if not target.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} points to {str(target)!r}, which does not exist"
            )
        return str(target)
    return str(path)


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON through a temporary file (never a partial file)."""
    atomic_write_bytes(json.dumps(data, indent=2, sort_keys=True).encode(), path)
