"""Slimmable layers: torch layers that compute with the first k channels of their own parameters.

Each class here subclasses the torch layer it slims (``nn.Linear``, ``nn.Conv2d``,
``nn.LayerNorm``, ``nn.BatchNorm2d``) and is installed by swapping the class of an existing,
built layer (see :mod:`vision_mtl.models.slimmable.convert`). The parameters therefore stay the
very same ``nn.Parameter`` objects: optimizers, checkpoints and state-dict keys are untouched, and
every width reads a *view* (``weight[:k_out, :k_in]``) of one shared parameter set — no copies.

Every layer holds a table ``width -> (k_in, k_out)`` computed once at conversion and the active
width, set by :func:`vision_mtl.models.slimmable.convert.set_width` on all layers at once.

Batch normalisation is *switchable*: the affine weight and bias are shared (sliced) across widths,
but each width keeps its own running mean / variance buffers, because the statistics of the first
k channels depend on how many channels fed them. Width 1.0 uses the layer's original buffers, so a
converted model at full width is the unconverted model exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: widths → (input channels, output channels) of one layer
WidthTable = dict[float, tuple[int, int]]


def channels_at(width: float, channels: int) -> int:
    """Channels (or heads) kept at ``width``: ``width × channels`` rounded half up, at least one.

    One rounding rule for every layer keeps residual sums consistent: a block's output and its
    shortcut have the same full channel count, hence the same count at every width.
    """
    return max(1, int(width * channels + 0.5))


def width_key(width: float) -> str:
    """Buffer-name suffix for ``width`` (``0.25 -> 'w0250'``); buffer names may not hold dots."""
    return f"w{round(width * 1000):04d}"


class SlimmableLayer:
    """Mixin: the width table and the active width of one slimmable layer."""

    width_table: WidthTable
    width: float

    def init_slimmable(self, table: WidthTable) -> None:
        """Record the per-width channel table and start at the widest width."""
        self.width_table = dict(table)
        self.width = max(table)

    def set_width(self, width: float) -> None:
        """Make ``width`` (one of the table's widths) the active one."""
        if width not in self.width_table:
            raise ValueError(
                f"width {width} is not one of this layer's widths {sorted(self.width_table)}"
            )
        self.width = width

    @property
    def active_channels(self) -> tuple[int, int]:
        """(input channels, output channels) at the active width."""
        return self.width_table[self.width]


class SlimLinear(SlimmableLayer, nn.Linear):
    """``nn.Linear`` computing ``x[..., :k_in] @ W[:k_out, :k_in].T + b[:k_out]``.

    With ``out_groups > 1`` the output is ``out_groups`` equal blocks (a fused q/k/v projection):
    the first ``k_out`` rows of *each* block are kept, not the first ``k_out`` of the whole.
    """

    out_groups: int

    def init_slim_linear(self, table: WidthTable, out_groups: int = 1) -> None:
        """Set the width table; ``k_out`` counts channels per output group."""
        if self.out_features % out_groups:
            raise ValueError(f"{self.out_features} outputs do not split into {out_groups} groups")
        self.init_slimmable(table)
        self.out_groups = out_groups

    def sliced_weight(self, group: int = 0) -> torch.Tensor:
        """The active weight of output group ``group``: a view of :attr:`weight`."""
        k_in, k_out = self.active_channels
        start = group * (self.out_features // self.out_groups)
        return self.weight[start : start + k_out, :k_in]

    def _sliced_bias(self, group: int = 0) -> torch.Tensor | None:
        if self.bias is None:
            return None
        start = group * (self.out_features // self.out_groups)
        return self.bias[start : start + self.active_channels[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Linear map on the first ``k_in`` input channels to the kept output channels."""
        k_in, k_out = self.active_channels
        if self.out_groups == 1 or k_out * self.out_groups == self.out_features:
            bias = None if self.bias is None else self.bias[: k_out * self.out_groups]
            return F.linear(x, self.weight[: k_out * self.out_groups, :k_in], bias)
        outs = [
            F.linear(x, self.sliced_weight(g), self._sliced_bias(g)) for g in range(self.out_groups)
        ]
        return torch.cat(outs, dim=-1)


class SlimConv2d(SlimmableLayer, nn.Conv2d):
    """``nn.Conv2d`` on the first ``k_in`` input channels with the first ``k_out`` filters.

    Dense convolutions (``groups == 1``) and depthwise ones (``groups == in == out``, sliced to
    ``k`` groups) are supported; other grouped convolutions are refused at conversion.
    """

    def sliced_weight(self) -> torch.Tensor:
        """The active filters: a view of :attr:`weight`."""
        k_in, k_out = self.active_channels
        if self.groups == 1:
            return self.weight[:k_out, :k_in]
        return self.weight[:k_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution with the active filters (padding mode ``zeros`` only)."""
        k_out = self.active_channels[1]
        bias = None if self.bias is None else self.bias[:k_out]
        groups = 1 if self.groups == 1 else k_out
        return F.conv2d(
            x, self.sliced_weight(), bias, self.stride, self.padding, self.dilation, groups
        )


class SlimLayerNorm(SlimmableLayer, nn.LayerNorm):
    """``nn.LayerNorm`` over the first ``k`` channels with the first ``k`` affine entries."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the active channels (the statistics are those of the active channels)."""
        k = self.active_channels[1]
        weight = None if self.weight is None else self.weight[:k]
        bias = None if self.bias is None else self.bias[:k]
        return F.layer_norm(x, (k,), weight, bias, self.eps)


class SwitchableBatchNorm2d(SlimmableLayer, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with shared (sliced) affine parameters and running stats per width.

    The full width keeps the original ``running_mean`` / ``running_var`` /
    ``num_batches_tracked``; every narrower width ``w`` gets its own buffers
    ``running_mean_w0500`` etc., initialised from the first ``k`` full-width statistics.
    """

    def init_switchable(self, table: WidthTable) -> None:
        """Set the width table and create one set of running-stat buffers per narrower width."""
        self.init_slimmable(table)
        if not self.track_running_stats:
            return
        for width, (_, k) in table.items():
            if k == self.num_features:
                continue
            key = width_key(width)
            self.register_buffer(f"running_mean_{key}", self.running_mean[:k].clone())
            self.register_buffer(f"running_var_{key}", self.running_var[:k].clone())
            self.register_buffer(
                f"num_batches_tracked_{key}", torch.zeros_like(self.num_batches_tracked)
            )

    def stats_at(self, width: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(running mean, running var, batches tracked) of ``width``; ``None`` if untracked."""
        if not self.track_running_stats:
            return None
        if self.width_table[width][1] == self.num_features:
            return self.running_mean, self.running_var, self.num_batches_tracked
        key = width_key(width)
        return (
            getattr(self, f"running_mean_{key}"),
            getattr(self, f"running_var_{key}"),
            getattr(self, f"num_batches_tracked_{key}"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm of the active channels with the active width's statistics.

        Mirrors ``nn.BatchNorm2d.forward`` (momentum, cumulative average when ``momentum`` is
        ``None``, batch statistics in training) on the active width's buffers.
        """
        self._check_input_dim(x)
        k = self.active_channels[1]
        stats = self.stats_at(self.width)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and stats is not None:
            tracked = stats[2]
            tracked.add_(1)
            momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or stats is None
        weight = None if self.weight is None else self.weight[:k]
        bias = None if self.bias is None else self.bias[:k]
        return F.batch_norm(
            x,
            None if stats is None else stats[0],
            None if stats is None else stats[1],
            weight,
            bias,
            use_batch_stats,
            momentum,
            self.eps,
        )


class PrefixParamSlicer:
    """Forward hooks that slice a ViT's token parameters (cls / register tokens, position table).

    timm's ``VisionTransformer._pos_embed`` reads ``self.cls_token``, ``self.reg_token`` and
    ``self.pos_embed`` directly. A pre-hook on ``patch_embed`` shadows them, for the duration of
    ``_pos_embed``, with channel views ``p[..., :k]`` placed in the instance ``__dict__``; a hook
    on ``pos_drop`` (the last call of ``_pos_embed``) removes the shadows. The registered
    parameters never change, so the state dict and optimizers see the original tensors.
    A callable object rather than a closure so that ``copy.deepcopy`` rebinds it to the copy.
    """

    def __init__(self, root: nn.Module, names: list[str], table: WidthTable) -> None:
        self.root = root
        self.names = names
        self.table = dict(table)
        self.width = max(table)

    def install(self, *_: object) -> None:
        """Shadow the token parameters with their active-width channel views."""
        self.remove()  # shadows a failed forward may have left behind
        k = self.table[self.width][1]
        for name in self.names:
            param = self.root._parameters[name]
            if k < param.shape[-1]:
                self.root.__dict__[name] = param[..., :k]

    def remove(self, *_: object) -> None:
        """Drop the shadows so the attributes resolve to the parameters again."""
        for name in self.names:
            self.root.__dict__.pop(name, None)
