"""Per-task losses, as the published multitask code defines them (REFERENCE.md §4).

Every loss takes the raw head output at the target's resolution (B×C×H×W) and the packed target
(B×H×W labels or B×C×H×W maps) and returns a scalar. Pixels without ground truth never contribute:
label tasks use an ignore value, map tasks treat an all-zero target pixel as invalid. A batch with
no valid pixel gives a zero loss that still carries the graph, so DDP sees every parameter used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vision_mtl.registry import MODELS


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask``; zero (attached to the graph) if the mask is empty.

    Branch-free: asking whether the mask is empty would read a value back from the device, one
    synchronization per task and step. Masked-out values are replaced before weighting, so a
    non-finite value where there is no ground truth cannot leak into the mean. ``anchor`` is
    kept for the callers' signature.
    """
    kept = torch.where(mask > 0, values, torch.zeros_like(values)) * mask
    return kept.sum() / mask.sum().clamp_min(1)


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy over classes, skipping ``ignore_index`` pixels."""

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the sum over valid pixels over their count: torch's mean, bit for bit, and zero (not
        # NaN) for a batch without labels, with no value read back from the device to decide
        valid = (target != self.ignore_index).sum().clamp_min(1)
        total = F.cross_entropy(
            logits, target.long(), ignore_index=self.ignore_index, reduction="sum"
        )
        return total / valid


@MODELS.register_module()
class BalancedCrossEntropyLoss(nn.Module):
    """Two-class cross-entropy with per-batch class balancing (the saliency loss).

    Each class is weighted by the other class's share of the batch's valid pixels, so a small
    salient region weighs as much as the background around it.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        positive = (target == 1) & valid
        pos_share = positive.sum().float() / valid.sum().float().clamp_min(1)
        weight = torch.stack([pos_share, 1.0 - pos_share]).to(logits.dtype)
        per_pixel = F.cross_entropy(
            logits, target.long(), weight=None, ignore_index=self.ignore_index, reduction="none"
        )
        pixel_weight = torch.where(positive, weight[1], weight[0])
        return _masked_mean(per_pixel * pixel_weight, valid.to(logits.dtype), logits)


@MODELS.register_module()
class BalancedBCELoss(nn.Module):
    """Binary cross-entropy with a fixed positive weight (the boundary loss).

    Boundary pixels are a few percent of an image; the published code weights positives by
    ``pos_weight`` (0.95) and negatives by ``1 - pos_weight``.
    """

    def __init__(self, pos_weight: float = 0.95, ignore_index: int = 255) -> None:
        super().__init__()
        if not 0.0 < pos_weight < 1.0:
            raise ValueError(f"BalancedBCELoss pos_weight must be in (0, 1), got {pos_weight}")
        self.pos_weight = pos_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits[:, 0]
        valid = target != self.ignore_index
        positive = (target == 1) & valid
        weight = torch.where(positive, self.pos_weight, 1.0 - self.pos_weight).to(logits.dtype)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits, positive.to(logits.dtype), reduction="none"
        )
        return _masked_mean(per_pixel * weight, valid.to(logits.dtype), logits)


@MODELS.register_module()
class MaskedL1Loss(nn.Module):
    """L1 over pixels whose target is non-zero (depth, disparity: 0 marks a missing measurement)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target.abs().sum(dim=1, keepdim=True) > 0).to(pred.dtype)
        per_pixel = (pred - target).abs().mean(dim=1, keepdim=True)
        return _masked_mean(per_pixel, valid, pred)


@MODELS.register_module()
class NormalsL1Loss(nn.Module):
    """L1 between the unit-normalized prediction and the ground-truth normal.

    Normalizing first makes the loss measure direction only, as the metric does; pixels whose
    ground truth has zero norm are invalid.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target.abs().sum(dim=1, keepdim=True) > 0).to(pred.dtype)
        # F.normalize is slow on CPU for the channel dimension; same result, computed directly.
        unit = pred / pred.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        # Mean over the three components, as the reference code's element-wise L1 does, so the
        # recipe's loss weights mean the same here.
        per_pixel = (unit - target).abs().mean(dim=1, keepdim=True)
        return _masked_mean(per_pixel, valid, pred)
