"""Per-task heads: the last, light layers that turn a task's feature map into its output."""

from __future__ import annotations

import torch
from torch import nn

from vision_mtl.models.decoders.layers import conv_bn_relu
from vision_mtl.registry import MODELS


@MODELS.register_module()
class ConvHead(nn.Module):
    """A 3×3 conv-BN-ReLU block followed by a 1×1 prediction layer.

    Args:
        in_channels: channels of the task feature map.
        out_channels: channels of the task's raw output (classes, 1 for depth, 3 for normals).
        hidden_channels: width of the hidden block (defaults to ``in_channels``).
        num_convs: hidden blocks before the prediction layer (0 gives a linear head).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        num_convs: int = 1,
    ) -> None:
        super().__init__()
        hidden = hidden_channels or in_channels
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_convs):
            layers.append(conv_bn_relu(channels, hidden))
            channels = hidden
        self.convs = nn.Sequential(*layers)
        # The prediction layer is what pruning must never touch (issue 7): keep its name stable.
        self.predict = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.convs(x))
