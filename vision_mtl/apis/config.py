"""Loading a config: overrides checked, one data root, a schedule that fits the run length."""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from pathlib import Path

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from vision_mtl.engine.schedules import ScheduleError, config_schedulers, scale_schedulers
from vision_mtl.engine.tensorboard import TENSORBOARD_KEY, apply_tensorboard_switch

# Top-level keys mmengine's Runner reads besides its constructor's arguments.
_RUNNER_KEYS = {
    "activation_checkpointing",
    "compile",
    "custom_imports",
    "efficient_conv_bn_eval",
    "find_unused_parameters",
    "gpu_ids",
    "model_wrapper_cfg",
    "runner_type",
    "strategy",
    "sync_bn",
}


def check_override_keys(cfg: Config, cfg_options: dict, source: str) -> None:
    """Refuse ``--cfg-options`` whose top-level key neither the config nor the Runner knows.

    mmengine merges any key, so ``train_cfgs.max_iters=1`` would be stored and ignored and the
    run would use the config's value; the error names the key and the closest known ones.
    """
    known = set(cfg.keys()) | _RUNNER_KEYS | {TENSORBOARD_KEY}  # the switch, base or not
    known |= set(inspect.signature(Runner.__init__).parameters) - {"self", "cfg"}
    for key in cfg_options:
        top = str(key).split(".")[0]
        if top not in known:
            close = difflib.get_close_matches(top, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(
                f"--cfg-options key {key!r}: {top!r} is not a key of {source!r} nor a Runner "
                f"setting{hint}"
            )


def load_config(
    config: str | os.PathLike,
    cfg_options: dict | None = None,
    work_dir: str | None = None,
    data_root: str | os.PathLike | None = None,
) -> Config:
    """Read a config file, apply ``--cfg-options`` overrides and set the work directory.

    Beyond mmengine's merge:

    * ``data_root`` (the argument, ``--data-root``, or a top-level ``data_root=`` override) is
      set on every dataloader's dataset; mmengine substitutes a config's ``data_root`` variable
      when the file is read, so overriding the variable alone changed nothing.
    * A ``train_cfg.max_iters`` override rescales the ``param_scheduler`` boundaries to the new
      length (:func:`vision_mtl.engine.schedules.scale_schedulers`), unless ``param_scheduler``
      is overridden too: a shortened run otherwise ended at its peak learning rate.
    * ``tensorboard=True`` adds mmengine's tensorboard backend to the visualizer and a picture
      of validation predictions per validation
      (:func:`vision_mtl.engine.tensorboard.apply_tensorboard_switch`); a value other than
      ``True``/``False``, or tensorboard not installed, fails here, before any training.

    The work directory defaults to ``work_dirs/<config stem>`` as in mmsegmentation.
    """
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    cfg = Config.fromfile(str(path))
    original_iters = (cfg.get("train_cfg") or {}).get("max_iters")
    options = dict(cfg_options or {})
    if options:
        check_override_keys(cfg, options, str(path))
        cfg.merge_from_dict(options)
    if data_root is None:
        data_root = options.get("data_root")
    if data_root is not None:
        set_data_root(cfg, data_root, str(path))
    else:
        _warn_on_split_roots(cfg, str(path))
    _rescale_schedule(cfg, options, original_iters)
    apply_tensorboard_switch(cfg, str(path))
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    return cfg


def _datasets(cfg: Config):
    """(dataloader name, dataset dict) of every dataset a dataloader builds, wrappers opened."""
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        stack = [(cfg.get(name) or {}).get("dataset")]
        while stack:
            dataset = stack.pop()
            if isinstance(dataset, dict):
                yield name, dataset
                stack.append(dataset.get("dataset"))
                stack.extend(dataset.get("datasets") or [])


def set_data_root(cfg: Config, data_root: str | os.PathLike, source: str = "the config") -> None:
    """Point every dataset of ``cfg`` that reads from disk at ``data_root``.

    Raises:
        KeyError: no dataset of the config reads a ``data_root`` (SynthScenes renders its data).
    """
    found = [d for _, d in _datasets(cfg) if "data_root" in d]
    if not found:
        raise KeyError(
            f"data_root: no dataset of {source!r} reads a data_root (its data are generated); "
            "drop --data-root"
        )
    for dataset in found:
        dataset["data_root"] = str(data_root)
    cfg.data_root = str(data_root)


def _warn_on_split_roots(cfg: Config, source: str) -> None:
    """Say so when the dataloaders read different roots (one was overridden, not the others)."""
    roots = {name: d["data_root"] for name, d in _datasets(cfg) if "data_root" in d}
    if len(set(roots.values())) > 1:
        listing = ", ".join(f"{name}: {root!r}" for name, root in roots.items())
        warnings.warn(
            f"{source}: the dataloaders read different data roots ({listing}); use --data-root "
            "(or data_root=...) to set them all",
            stacklevel=3,
        )


def _rescale_schedule(cfg: Config, options: dict, original: int | None) -> None:
    """Scale ``param_scheduler`` to an overridden ``train_cfg.max_iters`` (see load_config)."""
    iters = (cfg.get("train_cfg") or {}).get("max_iters")
    overridden = any(str(k).startswith("param_scheduler") for k in options)
    if not cfg.get("param_scheduler") or overridden or not original or iters in (None, original):
        return  # nothing to fit, the user's own schedule, or no longer an iteration-based loop
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"train_cfg.max_iters must be a positive integer, got {iters!r}")
    try:
        scaled = scale_schedulers(config_schedulers(cfg), original, iters)
    except ScheduleError as err:
        warnings.warn(
            f"train_cfg.max_iters {original} -> {iters}: the learning-rate schedule still spans "
            f"{original} iterations ({err})",
            stacklevel=3,
        )
        return
    spans = ", ".join(f"{s['type']} {s.get('begin', 0)}-{s.get('end', iters)}" for s in scaled)
    print_log(
        f"train_cfg.max_iters {original} -> {iters}: param_scheduler rescaled to {spans} "
        "(override param_scheduler to set it yourself)",
        logger="current",
    )
    cfg.param_scheduler = scaled
