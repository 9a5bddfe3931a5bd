"""MultiMAE reconstruction losses, on masked patches only.

A visible patch is in the encoder's input, so reconstructing it is copying: as in MAE and MultiMAE
only masked patches are scored. Every loss takes the decoder's patch predictions
(``B × N × (p²·C)``, :func:`~vision_mtl.models.multimae.output_adapters.patchify` layout), the
full-size target and the token mask (``B × N``, True = masked) and averages over the counted
elements of masked patches. With nothing to count (no masked patch, or only invalid pixels in them)
a loss is an exact zero that still depends on the prediction, so backward works.

* RGB: mean squared error; with ``norm_pix`` the target of every patch is first standardized by
  its own mean and variance over its ``p²·3`` values (MAE's normalized-pixel target, sharper
  reconstructions);
* depth: L1 on per-image standardized depth (:func:`standardize_depth`), invalid pixels excluded;
* semseg: cross-entropy, the ignore label excluded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vision_mtl.models.multimae.output_adapters import patchify


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ values·weights / Σ weights, or an exact zero (keeping the graph) if nothing is counted."""
    total = weights.sum()
    if total <= 0:
        return (values * 0).sum()
    return (values * weights).sum() / total


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standardize every patch (last dimension) by its own mean and unbiased variance."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def rgb_loss(
    pred: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    norm_pix: bool = True,
) -> torch.Tensor:
    """MSE over masked patches.

    Args:
        pred: ``B × N × (p²·3)`` predictions.
        image: ``B × 3 × H × W`` target (the normalized input image).
        mask: ``B × N`` bool, True = masked.
        patch_size: p.
        norm_pix: standardize each target patch by its own statistics first.
    """
    target = patchify(image, patch_size)
    if norm_pix:
        target = normalize_patches(target)
    per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    return _masked_mean(per_patch, mask.float())


def standardize_depth(
    depth: torch.Tensor, ignore_value: float = 0.0, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image standardized depth and its validity.

    Args:
        depth: ``B × 1 × H × W`` depth; ``ignore_value`` (and non-finite values) mark invalid
            pixels (the data preprocessor pads with the depth task's ignore value, 0).
        ignore_value: the invalid value.
        eps: added to the standard deviation.

    Returns:
        ``(standardized, valid)``: the depth minus its image's mean over valid pixels, divided by
        their standard deviation, 0 at invalid pixels; and the ``B × 1 × H × W`` bool validity.
        MultiMAE standardizes depth per image because its pseudo-labels have no common scale; it
        also makes the loss scale-free across datasets.
    """
    valid = torch.isfinite(depth) & (depth != ignore_value)
    d = torch.where(valid, depth, torch.zeros_like(depth)).float()
    w = valid.float()
    count = w.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    mean = (d * w).sum(dim=(1, 2, 3), keepdim=True) / count
    var = (((d - mean) * w) ** 2).sum(dim=(1, 2, 3), keepdim=True) / count
    out = (d - mean) / (var.sqrt() + eps)
    return torch.where(valid, out, torch.zeros_like(out)), valid


def depth_loss(
    pred: torch.Tensor,
    depth: torch.Tensor,
    valid: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
) -> torch.Tensor:
    """L1 over the valid pixels of masked patches.

    Args:
        pred: ``B × N × p²`` predictions.
        depth: ``B × 1 × H × W`` standardized depth (:func:`standardize_depth`).
        valid: ``B × 1 × H × W`` bool validity.
        mask: ``B × N`` bool, True = masked.
        patch_size: p.
    """
    target = patchify(depth.float(), patch_size)
    weights = patchify(valid.float(), patch_size) * mask[..., None].float()
    return _masked_mean((pred.float() - target).abs(), weights)


def semseg_loss(
    pred: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Cross-entropy over the labelled pixels of masked patches.

    Args:
        pred: ``B × N × (p²·K)`` logits.
        labels: ``B × H × W`` int64 labels, ``ignore_index`` = unlabelled.
        mask: ``B × N`` bool, True = masked.
        patch_size: p.
        ignore_index: the unlabelled label.
    """
    b, n, d = pred.shape
    k = d // (patch_size * patch_size)
    logits = pred.float().reshape(b * n * patch_size * patch_size, k)
    target = patchify(labels[:, None].float(), patch_size).reshape(-1).long()
    labelled = target != ignore_index
    safe = torch.where(labelled, target, torch.zeros_like(target))
    ce = F.cross_entropy(logits, safe, reduction="none")
    weights = labelled.float() * mask[..., None].expand(b, n, patch_size * patch_size).reshape(-1)
    return _masked_mean(ce, weights)
