"""Build a model from its config, pruned architecture included: the one place that does it.

A pruned model is the config's model with some channels and heads removed; the pruning record
(:mod:`vision_mtl.compress.pruning`) says which. The record travels in ``cfg.model.pruning``
(fine-tuning configs) or in a checkpoint's ``meta`` (``pruned.pth`` and every checkpoint of a
pruned model). A quantization-aware model (:mod:`vision_mtl.compress.qat`) is described the
same way by its QAT record, ``cfg.model.qat`` or ``meta['qat']``. :func:`build_model` is what
``init_model``, the Runner (training and ``tools/test.py``) and the exporters build through, so
a record is applied the same way everywhere, after the plain model is built.
"""

from __future__ import annotations

import copy
import os

from mmengine.registry import DefaultScope
from torch import nn

from vision_mtl.registry import MODELS, SCOPE
from vision_mtl.utils import read_checkpoint, resolve_checkpoint


def _plain(value):
    """``value`` with config dicts turned into plain dicts and lists (what a checkpoint can hold
    under ``weights_only`` loading)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_model(cfg: dict | nn.Module) -> nn.Module:
    """Build ``cfg`` (a model config) with vision_mtl's registry; apply its ``pruning`` record.

    The built model keeps the record as ``model.pruning_record`` (``None`` when unpruned) so
    every checkpoint it writes carries it. A slimmable config with a record (a width
    configuration deployed by ``tools/search_widths.py``) builds its plain model
    (``plain_config``) and applies the record. A module is returned as it is.
    """
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = copy.deepcopy(cfg)
    record = cfg.pop("pruning", None)
    qat = cfg.pop("qat", None)
    with DefaultScope.overwrite_default_scope(SCOPE):
        kind = cfg.get("type")
        cls = kind if isinstance(kind, type) else MODELS.get(kind)
    if record is not None and hasattr(cls, "plain_config"):
        # a slimmable config with a deployed width configuration: the plain model, pruned
        cfg = cls.plain_config(cfg)
    with DefaultScope.overwrite_default_scope(SCOPE):
        model = MODELS.build(cfg)
    if record is not None:
        from vision_mtl.compress.pruning import apply_record  # torch-pruning only when needed

        apply_record(model, record)
    model.pruning_record = _plain(record)
    if qat is not None:
        from vision_mtl.compress.qat import apply_record as quantize_aware

        quantize_aware(model, _plain(qat))
        model.qat_record = _plain(qat)
    return model


def checkpoint_record(checkpoint: str | os.PathLike) -> dict | None:
    """The pruning record in a checkpoint's ``meta`` (``None`` for an unpruned checkpoint)."""
    # mmap: only the meta is needed; the tensors are not read (a ViT-L checkpoint is 1.2 GB)
    meta = read_checkpoint(checkpoint, mmap=True).get("meta")
    return (meta or {}).get("pruning")


def configure_pruned(cfg, checkpoint: str | os.PathLike | None) -> dict | None:
    """Set ``cfg.model.pruning`` (and ``cfg.model.qat``) from a checkpoint's records so the
    config builds its architecture: pruned channels, and the fake quantization of a
    quantization-aware checkpoint."""
    if checkpoint is None:
        return None
    meta = read_checkpoint(resolve_checkpoint(checkpoint), mmap=True).get("meta") or {}
    record = meta.get("pruning")
    if record is not None:
        cfg.model.pruning = record
    if meta.get("qat") is not None:
        cfg.model.qat = meta["qat"]
    return record
