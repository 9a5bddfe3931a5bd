"""The shared-encoder baseline decoder: fused multi-scale features, one light head per task.

This is the "MTL baseline" of the multitask literature: all tasks share the backbone and one
fused feature map; only the heads are task-specific. Every other decoder is compared against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vision_mtl.models.decoders.base import DecoderOutput, MultiTaskDecoder
from vision_mtl.models.decoders.layers import conv_bn_relu, upsample_steps
from vision_mtl.registry import MODELS


@MODELS.register_module()
class BaselineDecoder(MultiTaskDecoder):
    """Project every backbone level, resize to the finest one, fuse, then upsample with convs.

    Plain ViTs give every level at stride 16 (or 8); dense tasks, boundaries above all, need
    finer maps, so the fused feature is brought to ``out_stride`` by ×2 bilinear steps, each
    followed by a 3×3 conv so the upsampling is learned. Only nearest/linear resizes and
    convolutions are used, which TensorRT supports.

    Args:
        in_channels: channels of each backbone level.
        in_strides: strides of each backbone level.
        tasks: task names.
        channels: width of the fused feature map.
        out_stride: stride of the returned features (a power-of-two fraction of the finest
            input stride); ``None`` keeps the finest input stride.
        num_classes: unused here; accepted for interface symmetry.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        tasks: Sequence[str],
        channels: int = 64,
        out_stride: int | None = 4,
        num_classes: dict[str, int] | None = None,
    ) -> None:
        super().__init__(in_channels, in_strides, tasks, num_classes)
        self.check_sizes(channels=channels)
        steps, self.out_stride = upsample_steps(
            type(self).__name__, min(self.in_strides), out_stride
        )
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in self.in_channels)
        self.fuse = conv_bn_relu(channels * len(self.in_channels), channels)
        self.upsample = nn.ModuleList(conv_bn_relu(channels, channels) for _ in range(steps))
        self.out_channels = {t: channels for t in self.tasks}

    def forward(self, features: Sequence[torch.Tensor]) -> DecoderOutput:
        finest = min(range(len(features)), key=lambda i: self.in_strides[i])
        size = features[finest].shape[-2:]
        maps = []
        for lateral, feat in zip(self.lateral, features):
            x = lateral(feat)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        x = self.fuse(torch.cat(maps, dim=1))
        for conv in self.upsample:
            x = conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return DecoderOutput(features={t: x for t in self.tasks})
