"""MultiMAE checkpoints → timm ViT weights: ours (mmengine) and the official release.

Three key layouts meet here:

* **ours** — :class:`~vision_mtl.models.multimae.MultiMAE`'s ``state_dict()`` (an mmengine
  checkpoint holds it under ``state_dict``): ``global_token.token``,
  ``adapters.<m>.proj.*`` / ``adapters.<m>.modality_embed`` / ``adapters.semseg.class_embed.weight``,
  ``blocks.<i>.*``, ``norm.*`` (``norm_pre.*``), ``decoders.*``;
* **official** — the EPFL-VILAB/MultiMAE release (``torch.load(f)["model"]``):
  ``global_tokens``, ``input_adapters.<m>.proj.*`` / ``.pos_emb`` / ``.class_emb.weight``,
  ``encoder.<i>.*``, ``output_adapters.*``;
* **timm** — ``timm.create_model("vit_*", num_classes=0)``: ``cls_token``, ``pos_embed``,
  ``patch_embed.proj.*``, ``blocks.<i>.*``, ``norm.*``.

:func:`official_to_ours` maps official → ours (the table is :data:`OFFICIAL_TO_OURS`),
:func:`multimae_to_timm` ours → timm (the logic of :meth:`MultiMAE.encoder_state_dict`, which calls
it), :func:`load_multimae_into_vit` reads either kind of file into a timm ViT strictly.

**Position embeddings.** Ours recomputes a sin-cos table for every grid (integer patch
coordinates) and adds a learned per-modality embedding; the official adapters hold a 14×14 table
(sin-cos in the release, same channel layout as :func:`.sincos_2d`, no modality embedding) that
they bicubically *interpolate* to other grids. A timm ``pos_embed`` therefore gets, at the ViT's
own grid, exactly what the source model would add there: ours → the sin-cos table at that grid
plus the RGB modality embedding; official → the RGB table resampled with timm's
``resample_abs_pos_embed`` (bicubic, no antialias, as the official ``F.interpolate``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from vision_mtl.models.multimae.adapters import sincos_2d
from vision_mtl.utils import read_checkpoint, state_dict_mismatch

#: Official name pattern → our name (``{m}`` a modality, ``{i}`` a block index, ``*`` the rest).
OFFICIAL_TO_OURS = {
    "global_tokens": "global_token.token  (1 global token only)",
    "input_adapters.{m}.proj.weight": "adapters.{m}.proj.weight  (m = rgb, depth, semseg)",
    "input_adapters.{m}.proj.bias": "adapters.{m}.proj.bias",
    "input_adapters.{m}.pos_emb": "— (ours recomputes sin-cos; used for timm pos_embed (rgb))",
    "(none)": "adapters.{m}.modality_embed  ← zeros (official has no modality embedding)",
    "input_adapters.semseg.class_emb.weight": (
        "adapters.semseg.class_embed.weight  (+ one zero row: our 'unlabelled' class)"
    ),
    "encoder.{i}.*": "blocks.{i}.*  (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2)",
    "output_adapters.*": "unused (our decoders differ structurally)",
}

_ADAPTED = ("rgb", "depth", "semseg")
# TimmBackbone prunes the final norm unless norm_last=True; the official release has none, so
# with norm_last a ViT keeps its initial (identity) final norm, reported as ``kept``
_TIMM_DROPPABLE = ("norm.",)


# ---------------------------------------------------------------------------------- reading
def _read(path: str | os.PathLike) -> dict:
    """A checkpoint file read with ``weights_only=True`` (official files also pickle ``args``)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return read_checkpoint(path, mmap=True)


def _inner(checkpoint: Mapping) -> dict:
    """The model's state dict inside a checkpoint dict (mmengine ``state_dict``, official
    ``model``), or the dict itself."""
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            return dict(checkpoint[key])
    return dict(checkpoint)


def checkpoint_kind(state: Mapping) -> str | None:
    """``"ours"``, ``"official"`` or ``None`` (not a MultiMAE state dict), by key names."""
    if "global_token.token" in state and any(k.startswith("adapters.") for k in state):
        return "ours"
    if "global_tokens" in state and any(k.startswith("input_adapters.") for k in state):
        return "official"
    return None


def read_multimae(path_or_state) -> tuple[dict, str, str]:
    """``(state_dict, kind, where)`` of a MultiMAE checkpoint file or (checkpoint) dict.

    Raises:
        ValueError: the file or dict is not a MultiMAE checkpoint of either layout.
    """
    if isinstance(path_or_state, (str, os.PathLike)):
        where = str(path_or_state)
        state = _inner(_read(path_or_state))
    else:
        where = "the given state dict"
        state = _inner(path_or_state)
    kind = checkpoint_kind(state)
    if kind is None:
        sample = ", ".join(sorted(state)[:6])
        raise ValueError(
            f"{where} is not a MultiMAE checkpoint: expected our keys (global_token.token, "
            f"adapters.*) or the official ones (global_tokens, input_adapters.*), found "
            f"{len(state)} keys such as {sample}"
        )
    return state, kind, where


def is_multimae_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a torch checkpoint holding a MultiMAE state dict (either layout).

    Files torch cannot read with ``weights_only=True`` (safetensors, legacy pickles) are not.
    """
    try:
        return checkpoint_kind(_inner(_read(path))) is not None
    except (ValueError, FileNotFoundError):
        return False


# ---------------------------------------------------------------------------------- official
def _is_sincos(table: torch.Tensor) -> bool:
    """Whether an official ``1 × D × h × w`` position table is the fixed sin-cos table."""
    if table.dim() != 4 or table.shape[1] % 4:
        return False
    d, h, w = table.shape[1:]
    ref = sincos_2d(d, h, w).T.reshape(1, d, h, w)
    return torch.allclose(table.float(), ref, atol=1e-4, rtol=0)


def official_to_ours(state_dict: Mapping) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map an official MultiMAE state dict onto our :class:`MultiMAE` key names.

    Args:
        state_dict: the official checkpoint (``{"model": ...}``) or its ``model`` dict.

    Returns:
        ``(mapped, unused)``. ``mapped`` holds ``global_token.token``, ``blocks.*`` and, per
        input adapter of ``rgb``/``depth``/``semseg``, its projection, a zero
        ``modality_embed`` and (semseg) the class embedding with one zero row appended (our
        learned "unlabelled" row, as the official fine-tuning pads it). ``unused`` lists the
        official keys not represented: ``output_adapters.*``, adapters of other modalities,
        position tables that are not the fixed sin-cos one (ours recomputes sin-cos), and
        anything unrecognized. Not filled: ``norm.*`` (the official encoder has no final norm)
        and ``decoders.*`` — load into our MultiMAE with ``strict=False`` for those.

    Raises:
        ValueError: not an official MultiMAE dict, or more than one global token.
    """
    state = _inner(state_dict)
    if checkpoint_kind(state) != "official":
        raise ValueError("official_to_ours: the dict has no global_tokens / input_adapters keys")
    mapped: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    dim = None
    for key, value in state.items():
        if key == "global_tokens":
            if value.dim() != 3 or value.shape[:2] != (1, 1):
                raise ValueError(
                    f"official global_tokens has shape {tuple(value.shape)}; only one global "
                    "token (1 × 1 × D) maps onto our model and a timm class token"
                )
            mapped["global_token.token"] = value
            dim = value.shape[-1]
            continue
        block = re.fullmatch(r"encoder\.(\d+)\.(.+)", key)
        if block:
            mapped[f"blocks.{block.group(1)}.{block.group(2)}"] = value
            continue
        adapter = re.fullmatch(r"input_adapters\.(\w+)\.(.+)", key)
        if adapter and adapter.group(1) in _ADAPTED:
            m, rest = adapter.groups()
            if rest in ("proj.weight", "proj.bias"):
                mapped[f"adapters.{m}.{rest}"] = value
                continue
            if rest == "pos_emb" and _is_sincos(value):
                continue  # represented: ours computes the same sin-cos table
            if m == "semseg" and rest == "class_emb.weight":
                pad = value.new_zeros(1, value.shape[1])
                mapped["adapters.semseg.class_embed.weight"] = torch.cat([value, pad])
                continue
        unused.append(key)
    if dim is None:
        raise ValueError("official_to_ours: no global_tokens")
    for m in _ADAPTED:
        if f"adapters.{m}.proj.weight" in mapped:
            ref = mapped["global_token.token"]
            mapped[f"adapters.{m}.modality_embed"] = ref.new_zeros(1, 1, dim)
    return mapped, sorted(unused)


# ---------------------------------------------------------------------------------- ours → timm
def multimae_to_timm(
    state_dict: Mapping,
    grid: tuple[int, int],
    *,
    class_token: bool = True,
    no_embed_class: bool = False,
) -> dict[str, torch.Tensor]:
    """Our MultiMAE state dict (or its mmengine checkpoint) → timm ViT keys.

    Args:
        state_dict: ``MultiMAE.state_dict()`` or ``dict(state_dict=..., meta=...)``.
        grid: the patch grid ``(h, w)`` of the timm model's ``pos_embed``
            (``vit.patch_embed.grid_size``).
        class_token: the timm model has a class token (``cls_token`` ← the global token).
        no_embed_class: timm's ``no_embed_class`` (the class token takes no position slot).

    Returns:
        ``patch_embed.proj.*`` (the RGB adapter), ``pos_embed`` (``1 × (P + h·w) × D``: the
        sin-cos table at ``grid`` plus the RGB modality embedding, after ``P = 1`` zero row when
        the class token takes a position), ``cls_token``, ``norm_pre.*``, ``blocks.*`` and
        ``norm.*`` as present. Depth/semseg adapters and decoders are left out.

    Raises:
        ValueError: no RGB adapter or global token.
    """
    state = _inner(state_dict)
    for key in ("adapters.rgb.proj.weight", "adapters.rgb.modality_embed", "global_token.token"):
        if key not in state:
            raise ValueError(
                f"multimae_to_timm: {key!r} missing; the MultiMAE needs the rgb modality"
            )
    embed = state["adapters.rgb.modality_embed"]
    dim = int(embed.shape[-1])
    gh, gw = int(grid[0]), int(grid[1])
    pos = sincos_2d(dim, gh, gw).to(embed) + embed.reshape(1, dim)
    if class_token and not no_embed_class:
        pos = torch.cat([pos.new_zeros(1, dim), pos])
    out = {
        "patch_embed.proj.weight": state["adapters.rgb.proj.weight"],
        "patch_embed.proj.bias": state["adapters.rgb.proj.bias"],
        "pos_embed": pos[None],
    }
    if class_token:
        out["cls_token"] = state["global_token.token"]
    for key, value in state.items():
        if key.split(".", 1)[0] in ("norm_pre", "blocks", "norm"):
            out[key] = value
    return {k: v.detach().clone() for k, v in out.items()}


# ---------------------------------------------------------------------------------- loading
def _vit_layout(vit: nn.Module) -> tuple[tuple[int, int], bool, bool]:
    needed = ("patch_embed", "pos_embed", "blocks")
    if not all(hasattr(vit, a) for a in needed) or vit.pos_embed is None:
        raise ValueError(
            f"load_multimae_into_vit needs a timm VisionTransformer with an absolute position "
            f"table, got {type(vit).__name__}"
        )
    if getattr(vit, "reg_token", None) is not None:
        raise ValueError("load_multimae_into_vit: ViTs with register tokens are not supported")
    grid = tuple(int(g) for g in vit.patch_embed.grid_size)
    return grid, getattr(vit, "cls_token", None) is not None, bool(vit.no_embed_class)


def vit_state_from_multimae(
    vit: nn.Module, path_or_state
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str, list[str], str]:
    """``(timm_state, ours_state, kind, unused, where)`` for ``vit`` from a MultiMAE checkpoint.

    ``timm_state`` has ``pos_embed`` at the ViT's own grid (see the module docstring); nothing is
    filtered yet.
    """
    raw, kind, where = read_multimae(path_or_state)
    unused: list[str] = []
    ours = raw
    if kind == "official":
        ours, unused = official_to_ours(raw)
    grid, class_token, no_embed_class = _vit_layout(vit)
    timm_state = multimae_to_timm(
        ours, grid, class_token=class_token, no_embed_class=no_embed_class
    )
    if kind == "official" and "input_adapters.rgb.pos_emb" in raw:
        table = raw["input_adapters.rgb.pos_emb"].float()
        d, h, w = table.shape[1:]
        flat = table.flatten(2).transpose(1, 2)  # 1 × (h·w) × D, row-major
        pos = resample_abs_pos_embed(
            flat, new_size=list(grid), old_size=[h, w], num_prefix_tokens=0, antialias=False
        ).to(raw["input_adapters.rgb.pos_emb"].dtype)
        if class_token and not no_embed_class:
            pos = torch.cat([pos.new_zeros(1, 1, d), pos], dim=1)
        timm_state["pos_embed"] = pos
    return timm_state, ours, kind, unused, where


def load_multimae_into_vit(vit: nn.Module, path_or_state, strict: bool = True) -> dict:
    """Initialize a timm ViT from a MultiMAE checkpoint, ours or official, detected by key names.

    The weights are mapped (:func:`official_to_ours`, :func:`multimae_to_timm`), ``pos_embed``
    is made for the ViT's grid (non-square grids too), the final ``norm.*`` is dropped when the
    ViT has none (``TimmBackbone`` prunes it), and the official release's missing final norm is
    kept at the ViT's own initialization. Then ``load_state_dict(strict=True)``.

    Args:
        vit: a timm ``VisionTransformer`` (width, depth and patch size must match).
        path_or_state: a checkpoint file, a checkpoint dict, or a state dict.
        strict: raise on any other missing or unexpected key (else load what fits and report).

    Returns:
        ``dict(kind="ours" | "official", source=..., unused=[official keys not used],
        missing=[...], unexpected=[...], kept=[ViT keys left at their initialization])``.

    Raises:
        ValueError: not a MultiMAE checkpoint; or (``strict``) keys or shapes differ — the
            message names the file and the keys.
    """
    timm_state, _, kind, unused, where = vit_state_from_multimae(vit, path_or_state)
    own = vit.state_dict()
    for key in list(timm_state):
        if key not in own and key.startswith(_TIMM_DROPPABLE):
            del timm_state[key]
    kept = []
    if kind == "official":
        for key in own:
            if key.startswith("norm.") and key not in timm_state:
                timm_state[key] = own[key]
                kept.append(key)
    missing = sorted(k for k in own if k not in timm_state)
    unexpected = sorted(k for k in timm_state if k not in own)
    problem = state_dict_mismatch(vit, timm_state, limit=8, shape_limit=8)
    if strict and problem:
        raise ValueError(
            f"MultiMAE checkpoint {where} ({kind} layout) does not fit the "
            f"{type(vit).__name__}: {problem}"
        )
    loadable = {k: v for k, v in timm_state.items() if k in own and v.shape == own[k].shape}
    vit.load_state_dict(loadable, strict=strict)
    return dict(
        kind=kind,
        source=where,
        unused=unused,
        missing=missing,
        unexpected=unexpected,
        kept=sorted(kept),
    )
