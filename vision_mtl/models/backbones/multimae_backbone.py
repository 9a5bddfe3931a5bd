"""A timm ViT that also reads depth, as MultiMAE fine-tunes on RGB-D (NYUD-v2 semseg).

MultiMAE's fine-tuning on RGB-D concatenates the tokens of the RGB and depth input adapters (and
the global token) and runs the pretrained encoder on all of them; the dense head reads the RGB
token positions. :class:`MultiMAEBackbone` does the same inside the multitask model's data flow,
where a backbone receives one tensor:

* the batch's ``inputs`` are ``B × 4 × H × W``: the normalized RGB image and, as channel 4, the
  depth *input* standardized per image over its valid pixels (0 = invalid), which the data
  pipeline adds (``AddInputModality`` → ``PackMultiTaskInputs`` → ``MultiTaskDataPreprocessor``);
* the RGB channels go through the ViT's own patch embedding and position table; the depth channel
  through a depth patch embedding (``depth_proj``, MultiMAE's depth input adapter) plus the *same*
  position table plus a learned ``depth_embed`` (depth's modality embedding relative to RGB's,
  which the ViT's table already holds), so a depth token and the RGB token of one patch carry the
  same position at every input size (timm resamples the table for ``dynamic_img_size``);
* the sequence is ``[prefix tokens, RGB tokens, depth tokens]`` through the ViT blocks (token
  order does not matter to attention without relative positions), and the chosen blocks' **RGB
  token positions** become the ``B × D × h × w`` maps, so decoders see exactly the shapes of
  :class:`TimmBackbone`.

A single 4-channel tensor keeps the model, the data preprocessor, TTA and checkpoints unchanged;
separate inputs would have touched every one of them. With a MultiMAE checkpoint as
``pretrained`` the ViT loads as in :class:`TimmBackbone` and the depth adapter from the same file
(ours: ``adapters.depth.proj.*`` and ``depth_embed = modality_embed(depth) −
modality_embed(rgb)``; official: ``input_adapters.depth.proj.*`` and ``depth_embed = 0``); a
MultiMAE checkpoint without a depth adapter is an error. Other checkpoints (timm weights)
initialize the ViT only and the depth adapter trains from scratch.

ONNX export (``vision_mtl.export``) feeds a 3-channel image and is **not supported** for RGB-D
models: :meth:`MultiMAEBackbone.forward` refuses a 3-channel input with a clear error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from vision_mtl.models.backbones.timm_backbone import TimmBackbone
from vision_mtl.models.multimae.checkpoint import is_multimae_checkpoint, read_multimae
from vision_mtl.registry import MODELS

_MODALITIES = (("rgb",), ("rgb", "depth"))


@MODELS.register_module()
class MultiMAEBackbone(TimmBackbone):
    """A timm ViT over RGB tokens and depth tokens; maps of the RGB positions.

    Args:
        model_name: a timm ``vit_*`` name.
        out_indices: blocks to return (as :class:`TimmBackbone`).
        pretrained: as :class:`TimmBackbone`. A local MultiMAE checkpoint (ours or official)
            also loads the depth adapter; timm weights (a local file, ``True`` or
            ``"hf-hub:..."``) initialize the ViT only.
        model_kwargs: ``timm.create_model`` kwargs (``patch_size``, ``embed_dim``,
            ``dynamic_img_size``, ...).
        in_modalities: ``("rgb", "depth")`` (inputs ``B × 4 × H × W``) or ``("rgb",)``, which is
            exactly :class:`TimmBackbone` (kept so one config key switches depth off).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        pretrained: bool | str | os.PathLike | None = None,
        model_kwargs: dict | None = None,
        in_modalities: Sequence[str] = ("rgb", "depth"),
    ) -> None:
        super().__init__(model_name, out_indices, pretrained, model_kwargs)
        self.in_modalities = tuple(in_modalities)
        if self.in_modalities not in _MODALITIES:
            raise ValueError(
                f"in_modalities must be ('rgb',) or ('rgb', 'depth'), got {in_modalities!r}"
            )
        self.use_depth = "depth" in self.in_modalities
        if not self.use_depth:
            return
        vit = self.model
        if not self.uses_intermediates or getattr(vit, "pos_embed", None) is None:
            raise ValueError(
                f"MultiMAEBackbone needs a timm ViT with a position table, got {model_name!r}"
            )
        if getattr(vit, "reg_token", None) is not None:
            raise ValueError(
                f"MultiMAEBackbone: register tokens are not supported ({model_name!r})"
            )
        if not isinstance(vit.patch_drop, nn.Identity):
            raise ValueError("MultiMAEBackbone: patch_drop_rate is not supported")
        patch = tuple(int(p) for p in vit.patch_embed.patch_size)
        dim = int(vit.embed_dim)
        self.depth_proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.depth_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.depth_embed, std=0.02)
        local = self.pretrained_source.file  # None for scratch and hub weights
        if local is not None and is_multimae_checkpoint(local):
            self._load_depth_adapter(local)

    def _load_depth_adapter(self, path: str) -> None:
        """``depth_proj`` and ``depth_embed`` from the MultiMAE checkpoint at ``path``."""
        state, kind, where = read_multimae(path)
        if kind == "ours":
            names = ("adapters.depth.proj.weight", "adapters.depth.proj.bias")
        else:
            names = ("input_adapters.depth.proj.weight", "input_adapters.depth.proj.bias")
        missing = [n for n in names if n not in state]
        if missing:
            raise ValueError(
                f"MultiMAE checkpoint {where} has no depth input adapter ({', '.join(missing)}); "
                "MultiMAEBackbone with in_modalities=('rgb', 'depth') needs one (pretrain with "
                "the depth modality, or use in_modalities=('rgb',))"
            )
        weight, bias = state[names[0]], state[names[1]]
        if weight.shape != self.depth_proj.weight.shape:
            raise ValueError(
                f"MultiMAE checkpoint {where}: {names[0]} has shape {tuple(weight.shape)}, the "
                f"backbone's depth adapter {tuple(self.depth_proj.weight.shape)}"
            )
        embed = torch.zeros_like(self.depth_embed)
        if kind == "ours":
            embed = state["adapters.depth.modality_embed"] - state["adapters.rgb.modality_embed"]
        with torch.no_grad():
            self.depth_proj.weight.copy_(weight)
            self.depth_proj.bias.copy_(bias)
            self.depth_embed.copy_(embed.reshape(self.depth_embed.shape))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps of the RGB token positions at the chosen blocks, ``B × D × h × w`` each."""
        if not self.use_depth:
            return super().forward(x)
        if x.dim() != 4 or x.shape[1] != 4:
            raise ValueError(
                f"MultiMAEBackbone with depth input needs B×4×H×W inputs (RGB + standardized "
                f"depth, added by the AddInputModality transform), got {tuple(x.shape)}; "
                "RGB-D models cannot be exported to ONNX (the export feeds RGB only)"
            )
        vit = self.model
        b = x.shape[0]
        feat = vit.patch_embed(x[:, :3])
        if feat.dim() == 4:  # dynamic_img_size: B × h × w × D
            grid = (int(feat.shape[1]), int(feat.shape[2]))
            feat = feat.flatten(1, 2)
        else:
            grid = tuple(int(g) for g in vit.patch_embed.grid_size)
        prefix = vit.num_prefix_tokens
        pos = resample_abs_pos_embed(
            vit.pos_embed,
            new_size=grid,
            old_size=vit.patch_embed.grid_size,
            num_prefix_tokens=0 if vit.no_embed_class else prefix,
        )
        patch_pos = pos[:, pos.shape[1] - feat.shape[1] :]
        depth = self.depth_proj(x[:, 3:]).flatten(2).transpose(1, 2)
        tokens = [feat + patch_pos, depth + patch_pos + self.depth_embed]
        if vit.cls_token is not None:
            cls = vit.cls_token.expand(b, -1, -1)
            if not vit.no_embed_class:
                cls = cls + pos[:, :1]
            tokens.insert(0, cls)
        h = vit.norm_pre(vit.pos_drop(torch.cat(tokens, dim=1)))
        n = feat.shape[1]
        wanted = set(self.out_indices)
        maps = []
        for i, block in enumerate(vit.blocks):
            h = block(h)
            if i in wanted:
                rgb = h[:, prefix : prefix + n]
                maps.append(rgb.reshape(b, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous())
        return maps
