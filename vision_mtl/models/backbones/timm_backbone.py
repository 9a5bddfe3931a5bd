"""Any timm model as a multi-level feature extractor that reports its channels and strides.

timm gives every modern model ``forward_intermediates`` (ViT, Swin, ConvNeXt, ResNet, ...): for a
ViT it returns the tokens of chosen blocks already reshaped into maps, for hierarchical models the
stage outputs. Models without it fall back to ``features_only=True``. Decoders read
:attr:`TimmBackbone.out_channels` and :attr:`TimmBackbone.out_strides` and size themselves, so no
config hard-codes a channel count.

Pretrained weights only ever come from a local file: the network is never touched. A MultiMAE
checkpoint (ours or the official release) is recognized by its key names and mapped onto the ViT
(:func:`vision_mtl.models.multimae.checkpoint.load_multimae_into_vit`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import timm
import torch
from torch import nn

from vision_mtl.models.multimae.checkpoint import is_multimae_checkpoint, load_multimae_into_vit
from vision_mtl.registry import MODELS


def _weight_hint(model_name: str) -> str:
    """Name the timm weight a user should download for ``model_name``, as timm knows it."""
    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # an unknown tag: create_model reports it better
        cfg = None
    if cfg is None:
        return f"the timm weights for {model_name!r}"
    hub = getattr(cfg, "hf_hub_id", None)
    if hub:
        return (
            f"'model.safetensors' from the Hugging Face repo {hub!r} (timm weight {model_name!r})"
        )
    url = getattr(cfg, "url", None)
    return f"{url} (timm weight {model_name!r})" if url else f"the timm weights for {model_name!r}"


@MODELS.register_module()
class TimmBackbone(nn.Module):
    """Wrap a timm model so it returns a list of feature maps (B×C_i×H_i×W_i).

    Args:
        model_name: any name ``timm.create_model`` accepts, e.g. ``vit_base_patch16_224``,
            ``swin_tiny_patch4_window7_224``, ``resnet50``.
        out_indices: which blocks (ViT) or stages (hierarchical models) to return. Negative
            indices count from the end. ``None`` returns the last four.
        pretrained: path of a local checkpoint (``.safetensors``, ``.pth``/``.bin``) loaded with
            timm's own filtering (position-embedding resizing, head removal). ``None`` trains from
            scratch. Hub names are deliberately not accepted: nothing downloads at run time.
            A **MultiMAE checkpoint** — ours (an mmengine ``.pth`` whose ``state_dict`` has the
            ``global_token``/``adapters.*`` keys of :class:`~vision_mtl.models.multimae.MultiMAE`)
            or the official release (``model`` with ``global_tokens``/``input_adapters.*``) — is
            detected by its keys and loaded strictly with
            :func:`~vision_mtl.models.multimae.checkpoint.load_multimae_into_vit` into the full
            ViT before its final norm is pruned (``pos_embed`` made for the ViT's grid); a
            mismatch raises a ``ValueError`` naming the file and the keys.
        model_kwargs: extra keyword arguments for ``timm.create_model`` (``img_size``,
            ``patch_size``, ``embed_dim``, ``depth``, ``drop_path_rate``, ...).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        pretrained: str | None = None,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        kwargs = dict(model_kwargs or {})
        multimae_path = None
        if pretrained is not None:
            path = os.path.expanduser(str(pretrained))
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"pretrained weights for backbone {model_name!r} not found at {path!r}. "
                    f"Download {_weight_hint(model_name)} and put the file at that path, or set "
                    "model.backbone.pretrained=None to train from scratch."
                )
            if is_multimae_checkpoint(path):
                multimae_path = path
            else:
                kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=path))
        self.model_name = model_name
        try:
            self.model = timm.create_model(model_name, num_classes=0, **kwargs)
        except RuntimeError as err:  # torch's load_state_dict: missing/unexpected/shape keys
            if "pretrained_cfg_overlay" not in kwargs:
                raise
            raise ValueError(
                f"pretrained weights {kwargs['pretrained_cfg_overlay']['file']!r} do not fit "
                f"backbone {model_name!r}: {err}"
            ) from err
        if multimae_path is not None:
            load_multimae_into_vit(self.model, multimae_path, strict=True)
        self.uses_intermediates = hasattr(self.model, "forward_intermediates")
        info = list(self.model.feature_info)
        indices = _resolve_indices(out_indices, len(info), model_name)
        self.out_indices = indices
        if self.uses_intermediates:
            # Heads and final norms are unused by dense prediction; pruning them keeps DDP from
            # complaining about parameters that receive no gradient.
            self.model.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
        else:
            self.model = timm.create_model(
                model_name, features_only=True, out_indices=indices, **kwargs
            )
        self.out_channels = [int(info[i]["num_chs"]) for i in indices]
        self.out_strides = [int(info[i]["reduction"]) for i in indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at the chosen levels, NCHW."""
        if self.uses_intermediates:
            return list(
                self.model.forward_intermediates(
                    x, indices=self.out_indices, intermediates_only=True
                )
            )
        return list(self.model(x))


def _resolve_indices(out_indices: Sequence[int] | None, num_levels: int, name: str) -> list[int]:
    """Turn (possibly negative) level indices into absolute ones, checking the range."""
    requested = list(out_indices) if out_indices is not None else [-4, -3, -2, -1]
    indices = [i + num_levels if i < 0 else i for i in requested]
    if not indices or not all(0 <= i < num_levels for i in indices):
        raise ValueError(
            f"out_indices {requested} outside the {num_levels} feature levels of {name!r}"
        )
    return indices
