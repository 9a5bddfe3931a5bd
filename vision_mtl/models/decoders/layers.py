"""Building blocks shared by the decoders: conv units, resizing and channel normalization.

Everything here exports to ONNX with operations TensorRT supports (convolutions, BatchNorm,
LayerNorm, bilinear resizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
) -> nn.Sequential:
    """Conv → BatchNorm → ReLU, the unit every decoder here is built from (size-preserving)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of a B×C×H×W map (no-op when it already has ``size``)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def channel_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """Apply a LayerNorm over the channels of a B×C×H×W map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def upsample_steps(owner: str, in_stride: int, out_stride: int | None) -> tuple[int, int]:
    """The ×2 steps from ``in_stride`` to ``out_stride``, and the stride reached.

    Raises:
        ValueError: ``out_stride`` is not ``in_stride`` divided by a power of two.
    """
    target = in_stride if out_stride is None else int(out_stride)
    steps = 0
    while target >= 1 and in_stride // (2**steps) > target:
        steps += 1
    if target < 1 or in_stride % target or in_stride // (2**steps) != target:
        raise ValueError(
            f"{owner}: out_stride {out_stride} must be the input stride {in_stride} divided by "
            "a power of two"
        )
    return steps, target
