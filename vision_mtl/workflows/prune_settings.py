"""The settings of a pruning run, and every check made before its minutes of work begin.

:class:`PruneSettings` holds what ``tools/prune.py``'s flags set (each field is the flag of the
same name, ``--global`` is ``global_pruning``); :func:`check_settings`, :func:`check_config`
and :func:`load_unpruned_model` refuse a bad value, a config without a key a phase reads, or a
checkpoint that does not fit, with one sentence naming the flag (or config key) and what was
expected, before anything is written. :func:`~vision_mtl.workflows.prune.prune_workflow` calls
them in that order.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.config import Config

from vision_mtl.apis.inference import init_model
from vision_mtl.compress.greedy import GREEDY_RANKS
from vision_mtl.compress.pruning import (
    IMPORTANCES,
    PruningError,
    check_head_pruning,
    check_ratio_dict,
    protected_layers,
)
from vision_mtl.input_size import InputSizeError, config_input_size
from vision_mtl.workflows.pruning_steps import check_finetune

#: ``importance`` values: the pruning criteria, and ``greedy`` (PAGCP-style search).
IMPORTANCE_CHOICES = (*IMPORTANCES, "greedy")

# Each count setting's minimum, and what its floor means where that needs saying.
_MINIMUMS = {
    "iterative_steps": (1, ""),
    "finetune_iters": (0, " (0: no fine-tuning)"),
    "grad_batches": (1, ""),
    "val_batches": (1, ""),
    "latency_runs": (1, ""),
    "calib_samples": (1, ""),
    "round_to": (0, " (0: exact channel counts)"),
}


@dataclass
class PruneSettings:
    """One pruning run: ``tools/prune.py``'s flags (see its docstring for their meaning).

    ``layer_ratios`` maps layer names to ratios, or holds the command line's ``NAME=R`` items;
    ``shape`` is ``--shape H W`` (``None``: the config's input size).
    """

    ratio: float
    out: str | os.PathLike
    importance: str = "magnitude"
    global_pruning: bool = False
    head_ratio: float = 0.0
    iterative_steps: int = 1
    finetune_iters: int = 0
    grad_batches: int = 4
    greedy_budget: float = 0.1
    greedy_step: float = 0.1
    greedy_rank: str = "magnitude"
    val_batches: int = 4
    layer_ratios: Mapping[str, float] | Sequence[str] = ()
    round_to: int = 16
    latency_runs: int = 100
    shape: tuple[int, int] | None = None
    quantize: bool = False
    calib_samples: int = 64

    @property
    def greedy(self) -> bool:
        """Whether each layer's ratio is searched (``importance='greedy'``)."""
        return self.importance == "greedy"

    @property
    def needs_gradients(self) -> bool:
        """Whether channels are ranked by Taylor scores, which need training batches."""
        ranked = self.greedy and self.greedy_rank == "task-taylor"
        return ranked or self.importance in ("taylor", "task-taylor")


def parse_layer_ratios(items: Mapping[str, float] | Sequence[str]) -> dict[str, float]:
    """``--layer-ratio`` items, each ``NAME=R`` with R in (0, 1), as {name: ratio}.

    A mapping is checked the same way, as if each entry were given as ``NAME=R``.

    Raises:
        PruningError: an item that is not ``NAME=R``, a ratio outside (0, 1), or a layer named
            twice.
    """
    if isinstance(items, Mapping):
        items = [f"{name}={ratio}" for name, ratio in items.items()]
    ratios: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        expected = "NAME=R: a layer name, '=', then a ratio in (0, 1), e.g. decoder.fuse.conv=0.5"
        try:
            ratio = float(value)
        except ValueError:
            ratio = None
        if not (sep and name and ratio is not None):
            raise PruningError(f"--layer-ratio item {item!r} is not {expected}")
        if not 0 < ratio < 1:
            raise PruningError(
                f"--layer-ratio item {item!r}: the ratio must be in (0, 1), got {value}"
            )
        if name in ratios:
            raise PruningError(
                f"--layer-ratio names layer {name!r} twice; give each layer one ratio"
            )
        ratios[name] = ratio
    return ratios


def _check_counts(settings: PruneSettings) -> None:
    """Every count setting at least its minimum."""
    for key, (minimum, meaning) in _MINIMUMS.items():
        value = getattr(settings, key)
        if value < minimum:
            flag = "--" + key.replace("_", "-")
            raise PruningError(f"{flag} must be an integer >= {minimum}{meaning}, got {value}")


def _check_out(out: Path) -> None:
    """``out`` is, or can be made, a writable directory (checked before anything is written)."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PruningError(f"--out {str(out)!r} cannot be a directory: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PruningError(f"--out {str(out)!r} cannot be written: {str(existing)!r} is read-only")


def check_settings(settings: PruneSettings) -> dict[str, float]:
    """Every setting's value and combination, before any file is read; returns the layer ratios.

    Raises:
        PruningError: one sentence naming the flag, the value and what was expected.
    """
    if settings.importance not in IMPORTANCE_CHOICES:
        raise PruningError(
            f"--importance must be one of {IMPORTANCE_CHOICES}, got {settings.importance!r}"
        )
    if not 0 < settings.ratio < 1:
        raise PruningError(f"--ratio must be in (0, 1), got {settings.ratio}")
    if not 0 <= settings.head_ratio < 1:
        raise PruningError(
            f"--head-ratio must be in [0, 1) (0 keeps every head), got {settings.head_ratio}"
        )
    _check_counts(settings)
    layer_ratios = parse_layer_ratios(settings.layer_ratios)
    if settings.greedy:
        if (
            settings.global_pruning
            or settings.iterative_steps > 1
            or layer_ratios
            or settings.head_ratio
        ):
            raise PruningError(
                "--importance greedy chooses every layer's ratio itself; --global, "
                "--iterative-steps, --layer-ratio and --head-ratio do not apply to it"
            )
        if not 0 < settings.greedy_budget < math.inf:
            raise PruningError(
                "--greedy-budget must be a positive relative loss rise, got "
                f"{settings.greedy_budget}"
            )
        if not 0 < settings.greedy_step <= settings.ratio:
            raise PruningError(
                f"--greedy-step must be in (0, --ratio={settings.ratio}], got "
                f"{settings.greedy_step}"
            )
        if settings.greedy_rank not in GREEDY_RANKS:
            raise PruningError(
                f"--greedy-rank must be one of {GREEDY_RANKS}, got {settings.greedy_rank!r}"
            )
    _check_out(Path(settings.out))
    return layer_ratios


def check_config(cfg: Config, config: str, settings: PruneSettings) -> tuple[int, int]:
    """The config has what every later phase reads; returns the input size (H, W).

    The fine-tuning schedule is built and stepped here (:func:`check_finetune`), so a schedule
    that cannot be scaled to ``finetune_iters`` stops the run before the pruning.

    Raises:
        PruningError: a missing config key, no input size (naming ``--shape``), or a
            fine-tuning schedule that cannot run.
    """
    needed = ["test_dataloader", "test_evaluator"]
    if settings.needs_gradients:
        needed.append("train_dataloader")
    if settings.greedy:
        needed.append("val_dataloader")
    missing = [key for key in needed if not cfg.get(key)]
    if missing:
        raise PruningError(
            f"config {config!r} does not set {', '.join(missing)}, which this run reads"
        )
    try:
        canvas = config_input_size(cfg, settings.shape, config)
    except InputSizeError as err:
        raise PruningError(str(err)) from None
    try:
        if settings.finetune_iters:
            check_finetune(cfg, settings.finetune_iters)
    except PruningError as err:
        raise PruningError(
            f"--finetune-iters {settings.finetune_iters} with config {config!r}: {err}"
        ) from None
    except ValueError as err:
        raise PruningError(f"config {config!r}: {err}") from None
    return canvas


def load_unpruned_model(
    cfg: Config,
    config: str,
    checkpoint: str | os.PathLike,
    settings: PruneSettings,
    layer_ratios: Mapping[str, float],
) -> tuple[torch.nn.Module, list[str]]:
    """The unpruned model with the checkpoint's weights, and the config's protected patterns.

    The per-layer ratios and ``head_ratio`` are checked against the model.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        PruningError: a checkpoint that does not fit the config or is already pruned, or a
            layer ratio or head ratio the model does not allow.
    """
    try:
        model = init_model(copy.deepcopy(cfg), checkpoint, device="cpu")
    except FileNotFoundError:
        raise
    except (PruningError, RuntimeError, KeyError, ValueError) as err:
        raise PruningError(
            f"checkpoint {str(checkpoint)!r} does not fit config {config!r}: {err}"
        ) from None
    if model.cfg.model.get("pruning") is not None:
        raise PruningError(
            f"checkpoint {str(checkpoint)!r} is already pruned (its meta holds a pruning "
            "record); records do not chain, so prune the unpruned checkpoint it came from with "
            "the larger --ratio"
        )
    patterns = list(cfg.get("pruning", {}).get("protected", []))
    try:
        check_ratio_dict(model, dict(layer_ratios), protected_layers(model, patterns))
    except PruningError as err:
        raise PruningError(f"--layer-ratio: {err}") from None
    try:
        if settings.head_ratio:
            check_head_pruning(model)
    except PruningError as err:
        raise PruningError(f"--head-ratio {settings.head_ratio}: {err}") from None
    return model, patterns
