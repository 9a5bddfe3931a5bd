"""InvPT's official checkpoints (Ye & Xu, ECCV 2022) as vision_mtl state dicts.

The official code (github.com/prismformore/Multi-Task-Transformer, ``InvPT/``) saves
``{"model": state_dict, ...}`` from a DDP-wrapped ``TransformerNet``: a ViT backbone, a
``TransformerDecoder`` (preliminary decoders, three UP-Transformer stages, fusion) and one
linear head per task. :func:`convert_invpt` maps every tensor onto
:class:`~vision_mtl.models.decoders.CrossTaskAttentionDecoder` with a
:class:`~vision_mtl.models.backbones.TimmBackbone` ViT (``norm_last=True``) and linear
``ConvHead``\\ s, which compute the official forward (tests/test_convert_invpt.py).

What the mapping must know beyond names:

* the official code indexes per-task modules (``patch_embed.i``, ``conv_proj_q.i``,
  ``redu_chan.s.i``) by the task's position in its own order (:data:`OFFICIAL_ORDER`), and each
  stage's LayerNorm spans all tasks' channels in that order; ours follow the config's order;
* its keys and values come from two linears (``proj_k``, ``proj_v``), ours from one (``kv``);
* it builds modules its forward never runs (:data:`UNUSED`); their tensors are reported, not
  loaded. Any other official tensor without a place, or any of ours left unfilled, is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

#: The official task order (InvPT/utils/config.py appends the tasks in this order).
OFFICIAL_ORDER = ("semseg", "depth", "human_parts", "sal", "normals", "edge")
#: Official task names that differ from ours.
TASK_NAMES = {"sal": "saliency"}

#: Official tensors of modules built but never used by the forward, as patterns.
UNUSED = (
    # the third backbone level's projection: stage 0 has no patch embedding to add it to
    r"multi_task_decoder\.scale_embed\.2\.",
    # stage 0 has no previous attention to fuse
    r"multi_task_decoder\.invpt\.invpt_stages\.0\.blocks\.0\.attn\.fuse_attn\.",
    # stage 0's output keeps its width: no channel reduction
    r"multi_task_decoder\.invpt\.redu_chan\.0\.",
    # a final LayerNorm over all tasks that the forward never calls
    r"multi_task_decoder\.invpt\.norm_mt\.",
)


def is_unused(key: str) -> bool:
    """Whether ``key`` is a tensor of a module the official forward never runs (:data:`UNUSED`)."""
    return any(re.match(p, key) for p in UNUSED)


_D = "multi_task_decoder."
_S = _D + "invpt.invpt_stages."


@dataclass(frozen=True)
class Conversion:
    """The result of :func:`convert_invpt`.

    Attributes:
        state_dict: our model's tensors, every key filled.
        unused: the official keys that have no place (all in :data:`UNUSED`).
        tasks: the official task names found, in the official order.
    """

    state_dict: dict[str, torch.Tensor]
    unused: list[str]
    tasks: list[str]


def official_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The model's tensors in an official checkpoint: under ``model`` (as ``train_utils.py``
    saves) or the mapping itself, with DDP's ``module.`` prefix removed."""
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint entry 'model' is a {type(state).__name__}, not a dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def official_tasks(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The tasks of an official state dict (from its heads), in the official order."""
    found = {m.group(1) for k in state if (m := re.match(r"heads\.([^.]+)\.linear_pred\.", k))}
    unknown = sorted(found - set(OFFICIAL_ORDER))
    if unknown:
        raise ValueError(f"InvPT checkpoint has heads for unknown tasks {unknown}")
    if not found:
        raise ValueError(
            "not an InvPT checkpoint: no 'heads.<task>.linear_pred' tensors (keys start with "
            f"{sorted({k.split('.')[0] for k in state})})"
        )
    return [t for t in OFFICIAL_ORDER if t in found]


def _task_rules(tasks: list[str], ours: Sequence[str]) -> list[tuple[str, str]]:
    """(official prefix, our prefix) pairs of every per-task module."""
    rules = []
    for i, t in enumerate(tasks):
        o = TASK_NAMES.get(t, t)
        j = list(ours).index(o)
        rules += [
            (f"heads.{t}.linear_pred.", f"heads.{o}.predict."),
            (f"{_D}intermediate_head.{t}.", f"decoder.intermediate.{o}."),
            (f"{_D}invpt.mix_proj.{t}.0.", f"decoder.mix.{o}."),
            (f"{_D}invpt.mt_proj.{t}.0.", f"decoder.refine.{o}.0."),
            (f"{_D}invpt.mt_proj.{t}.1.", f"decoder.refine.{o}.1."),
        ]
        for block in (0, 1):
            p = f"{_D}preliminary_decoder.{t}.{block}."
            rules += [
                (p + "conv.", f"decoder.preliminary.{o}.{block}.0."),
                (p + "bn1.", f"decoder.preliminary.{o}.{block}.1."),
            ]
        for s in range(3):
            attn = f"{_S}{s}.blocks.0.attn."
            rules += [
                (f"{attn}conv_proj_q.{i}.conv.", f"decoder.stages.{s}.attn.query_conv.{j}.0."),
                (f"{attn}conv_proj_q.{i}.bn.", f"decoder.stages.{s}.attn.query_conv.{j}.1."),
            ]
            if s:
                rules.append((f"{_D}invpt.redu_chan.{s}.{i}.", f"decoder.to_out.{s - 1}.{o}."))
                # UpEmbed: [Upsample, Conv, BN, ReLU, Conv, BN, ReLU] → ours: [Conv, BN, ReLU,
                # [Conv, BN, ReLU]]
                up = f"decoder.up.{s - 1}.{o}.block."
                for k, index in ((1, "0"), (2, "1"), (4, "3.0"), (5, "3.1")):
                    rules.append((f"{_S}{s}.patch_embed.{i}.proj.{k}.", f"{up}{index}."))
    return rules


def _shared_rules() -> list[tuple[str, str]]:
    rules = [
        ("backbone.", "backbone.model."),
        # InvPT adds scale_embed.1 (a conv) in stage 1 and scale_embed.0 (a transposed conv,
        # ×2) in stage 2; ours are indexed by stage
        (f"{_D}scale_embed.1.", "decoder.back.0."),
        (f"{_D}scale_embed.0.", "decoder.back.1."),
    ]
    for s in range(3):
        block, ours = f"{_S}{s}.blocks.0.", f"decoder.stages.{s}."
        rules += [
            (block + "norm1.", ours + "norm_attn."),
            (block + "norm2.", ours + "norm_mlp."),
            (block + "mlp.fc1.", ours + "mlp.0."),
            (block + "mlp.fc2.", ours + "mlp.2."),
            (block + "attn.proj_q.", ours + "attn.q."),
            (block + "attn.proj.", ours + "attn.proj."),
        ]
        if s:
            rules.append((block + "attn.fuse_attn.", ours + "attn.fuse_scores."))
    return rules


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for official, ours in rules:
        if key.startswith(official):
            return ours + key[len(official) :]
    return None


def convert_invpt(
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    tasks: Sequence[str],
) -> Conversion:
    """Map an official InvPT state dict onto our model's keys.

    Args:
        state: the official tensors (:func:`official_state_dict`).
        target: our model's state dict (only names and shapes are read; meta tensors do).
        tasks: our model's task order.

    Raises:
        ValueError: the task sets differ, a tensor's shape does not fit ours, an official
            tensor has no place and is not one of :data:`UNUSED`, or one of ours stays unfilled.
    """
    official = official_tasks(state)
    mapped_tasks = sorted(TASK_NAMES.get(t, t) for t in official)
    if mapped_tasks != sorted(tasks):
        raise ValueError(
            f"the checkpoint's tasks {official} (ours: {mapped_tasks}) differ from the "
            f"model's {list(tasks)}: choose the config of the checkpoint's dataset"
        )
    rules = _task_rules(official, tasks) + _shared_rules()
    out: dict[str, torch.Tensor] = {}
    leftover = []
    kv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = re.match(rf"{re.escape(_S)}(\d)\.blocks\.0\.attn\.proj_([kv])\.(weight|bias)$", key)
        if m:
            kv.setdefault((int(m.group(1)), m.group(3)), {})[m.group(2)] = value
            continue
        norm = re.match(rf"{re.escape(_D)}invpt\.norm_mts\.(\d)\.(weight|bias)$", key)
        if norm:
            out[f"decoder.stage_norms.{norm.group(1)}.{norm.group(2)}"] = _reorder_tasks(
                value, official, tasks
            )
            continue
        name = _rename(key, rules)
        if name is None or is_unused(key):
            leftover.append(key)
            continue
        out[name] = value
    for (s, leaf), pair in sorted(kv.items()):
        if sorted(pair) != ["k", "v"]:
            raise ValueError(f"InvPT stage {s}: proj_k.{leaf} and proj_v.{leaf} come in pairs")
        out[f"decoder.stages.{s}.attn.kv.{leaf}"] = torch.cat([pair["k"], pair["v"]], dim=0)
    unknown = [k for k in leftover if not is_unused(k)]
    if unknown:
        raise ValueError(
            f"{len(unknown)} official tensors have no place in the model: {unknown[:8]}"
            + (" ..." if len(unknown) > 8 else "")
        )
    _check_against(out, target)
    return Conversion(state_dict=out, unused=sorted(leftover), tasks=official)


def _reorder_tasks(
    value: torch.Tensor, official: Sequence[str], tasks: Sequence[str]
) -> torch.Tensor:
    """A LayerNorm vector over all tasks' channels, from the official task order to ours."""
    chunks = dict(zip(official, value.chunk(len(official)), strict=True))
    inverse = {TASK_NAMES.get(t, t): t for t in official}
    return torch.cat([chunks[inverse[t]] for t in tasks])


def _check_against(out: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(target) - set(out))
    if missing:
        raise ValueError(
            f"{len(missing)} of the model's tensors have no source in the checkpoint: "
            f"{missing[:8]}" + (" ..." if len(missing) > 8 else "")
        )
    extra = sorted(set(out) - set(target))
    if extra:
        raise ValueError(
            f"{len(extra)} converted tensors are not in the model (a different architecture "
            f"or config?): {extra[:8]}" + (" ..." if len(extra) > 8 else "")
        )
    wrong = [
        f"{k}: checkpoint {tuple(out[k].shape)}, model {tuple(target[k].shape)}"
        for k in sorted(out)
        if tuple(out[k].shape) != tuple(target[k].shape)
    ]
    if wrong:
        raise ValueError(
            f"{len(wrong)} tensors do not fit the model's shapes (a config with other sizes?): "
            + "; ".join(wrong[:6])
        )
