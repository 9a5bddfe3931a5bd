"""Slot-following slimmable layers and the plan entries that install them.

A slimmable multitask decoder has several named *width slots* (see
:mod:`vision_mtl.models.slimmable.decoders`). Every layer here computes with the first k
channels of its own parameters, like the layers of :mod:`.layers`, but takes its widths from a
*configuration* (slot → width) through the slots it was given at conversion.

A decoder's *plan* lists its layers with their slots, one :data:`PlanEntry` each:

* ``("conv", input slot, output slot, input groups)`` — :class:`SlotConv2d`;
* ``("bn", slot)`` — :class:`SlotBatchNorm2d`;
* ``("ln", slot)`` — :class:`SlotLayerNorm` (an ``nn.LayerNorm`` over channels);
* ``("concat", ((slot, channels), ...), output slot)`` — :class:`SlotConcatConv2d` or
  :class:`SlotConcatLinear`, whose input is the concatenation of blocks of *different* slots
  (e.g. TaskExpert's gates, reading a pooled backbone feature and a task memory).

A ``None`` slot keeps that side at full width. These live apart from the decoder plans so that
every decoder's plan module can import them without importing the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vision_mtl.models.slimmable.layers import (
    SlimConv2d,
    SlimLayerNorm,
    SlimLinear,
    SwitchableBatchNorm2d,
    channels_at,
)

ENCODER = "encoder"
DECODER = "decoder"
#: kinds of width slots reported by ``decoder_width_slots``
SHARED = "shared"
PER_TASK = "per task"

#: one plan entry: a layer and how it slims (see the module docstring)
PlanEntry = tuple[nn.Module, tuple]


class SlotLayer:
    """Mixin: a slimmable layer whose width follows named slots of a configuration."""

    def slot_key(self, config: Mapping[str, float]) -> object:
        """The key of this layer's width table selected by ``config``."""
        raise NotImplementedError

    def set_configuration(self, config: Mapping[str, float]) -> None:
        """Make the widths of ``config`` (slot → width) the active ones."""
        self.set_width(self.slot_key(config))


def _slot_widths(slot: str | None, widths: Mapping[str, Sequence[float]]) -> tuple[float, ...]:
    return (1.0,) if slot is None else tuple(widths[slot])


class SlotConv2d(SlotLayer, SlimConv2d):
    """A :class:`SlimConv2d` whose input and output channels follow two width slots.

    With ``in_groups > 1`` the input is the concatenation of ``in_groups`` equal blocks (e.g.
    the fused levels of a decoder) and the first k channels of *each* block are kept; that
    weight is gathered (a copy in the forward pass), while the gradient still reaches only
    the kept entries of the one shared parameter.
    """

    in_slot: str | None
    out_slot: str | None
    in_groups: int

    def init_slots(
        self,
        in_slot: str | None,
        out_slot: str | None,
        widths: Mapping[str, Sequence[float]],
        in_groups: int = 1,
    ) -> None:
        """Build the ``(input width, output width) -> (k_in, k_out)`` table of the two slots."""
        block = self.in_channels // in_groups
        k_in = {
            w: self.in_channels if in_slot is None else channels_at(w, block) * in_groups
            for w in _slot_widths(in_slot, widths)
        }
        k_out = {
            w: self.out_channels if out_slot is None else channels_at(w, self.out_channels)
            for w in _slot_widths(out_slot, widths)
        }
        table = {(w_in, w_out): (k_in[w_in], k_out[w_out]) for w_in in k_in for w_out in k_out}
        self.init_slimmable(table)
        self.in_slot, self.out_slot, self.in_groups = in_slot, out_slot, in_groups

    def slot_key(self, config: Mapping[str, float]) -> tuple[float, float]:
        """``(input width, output width)`` of this layer in ``config``."""
        w_in = 1.0 if self.in_slot is None else config[self.in_slot]
        w_out = 1.0 if self.out_slot is None else config[self.out_slot]
        return w_in, w_out

    def sliced_weight(self) -> torch.Tensor:
        """The active filters: a view of :attr:`weight`, gathered per block if ``in_groups > 1``."""
        k_in, k_out = self.active_channels
        if self.in_groups == 1 or k_in == self.in_channels:
            return super().sliced_weight()
        k = k_in // self.in_groups
        return self.weight[:k_out].unflatten(1, (self.in_groups, -1))[:, :, :k].flatten(1, 2)


class SlotBatchNorm2d(SlotLayer, SwitchableBatchNorm2d):
    """A :class:`SwitchableBatchNorm2d` following one slot (running statistics per width)."""

    slot: str

    def init_slot(self, slot: str, widths: Mapping[str, Sequence[float]]) -> None:
        """Build the width table of ``slot`` and the per-width statistics buffers."""
        self.init_switchable({w: (0, channels_at(w, self.num_features)) for w in widths[slot]})
        self.slot = slot

    def slot_key(self, config: Mapping[str, float]) -> float:
        """The width of this layer's slot in ``config``."""
        return config[self.slot]


class SlotLayerNorm(SlotLayer, SlimLayerNorm):
    """A :class:`SlimLayerNorm` following one slot: statistics over the active channels only.

    The norm acts on the last axis, so a channel norm of a B×C×H×W map (``channel_norm``, which
    permutes the channels last) slims with it unchanged.
    """

    slot: str

    def init_slot(self, slot: str, widths: Mapping[str, Sequence[float]]) -> None:
        """Build the width table of ``slot``."""
        (channels,) = self.normalized_shape
        self.init_slimmable({w: (channels_at(w, channels),) * 2 for w in widths[slot]})
        self.slot = slot

    def slot_key(self, config: Mapping[str, float]) -> float:
        """The width of this layer's slot in ``config``."""
        return config[self.slot]


class SlotConcat(SlotLayer):
    """Mixin: a layer reading a concatenation of blocks, each following its own slot.

    The table is keyed by the tuple of the blocks' widths and the output width. The active
    weight keeps the first k columns of each block: :meth:`block_weights` are views of the one
    parameter, concatenated (a copy) for the forward pass; at full width the whole parameter is
    used as it is, so the converted layer computes exactly as the original.
    """

    in_blocks: tuple[tuple[str | None, int], ...]
    out_slot: str | None

    def init_blocks(
        self,
        in_blocks: Sequence[tuple[str | None, int]],
        out_slot: str | None,
        widths: Mapping[str, Sequence[float]],
        in_total: int,
        out_total: int,
    ) -> None:
        """Build the ``((block widths...), output width) -> (k_in, k_out)`` table."""
        if sum(size for _, size in in_blocks) != in_total:
            raise ValueError(
                f"{type(self).__name__}: blocks {list(in_blocks)} do not add up to its "
                f"{in_total} input channels"
            )
        keys: list[tuple[float, ...]] = [()]
        for slot, _ in in_blocks:
            keys = [(*key, w) for key in keys for w in _slot_widths(slot, widths)]
        table = {}
        for key in keys:
            k_in = sum(
                size if slot is None else channels_at(w, size)
                for (slot, size), w in zip(in_blocks, key, strict=True)
            )
            for w_out in _slot_widths(out_slot, widths):
                k_out = out_total if out_slot is None else channels_at(w_out, out_total)
                table[(key, w_out)] = (k_in, k_out)
        self.init_slimmable(table)
        self.in_blocks, self.out_slot = tuple(in_blocks), out_slot

    def slot_key(self, config: Mapping[str, float]) -> tuple[tuple[float, ...], float]:
        """``((width of each input block), output width)`` in ``config``."""
        key = tuple(1.0 if slot is None else config[slot] for slot, _ in self.in_blocks)
        return key, 1.0 if self.out_slot is None else config[self.out_slot]

    def block_weights(self) -> list[torch.Tensor]:
        """The active columns of each input block: views of the weight."""
        widths, _ = self.width
        k_out = self.active_channels[1]
        views, start = [], 0
        for (slot, size), w in zip(self.in_blocks, widths, strict=True):
            k = size if slot is None else channels_at(w, size)
            views.append(self.weight[:k_out, start : start + k])
            start += size
        return views

    def concat_weight(self) -> torch.Tensor:
        """The active weight: the whole parameter at full input width, else the gathered blocks."""
        k_in, k_out = self.active_channels
        if k_in == self.weight.shape[1]:
            return self.weight[:k_out]
        return torch.cat(self.block_weights(), dim=1)


class SlotConcatConv2d(SlotConcat, SlimConv2d):
    """A dense :class:`SlimConv2d` whose input blocks follow different slots."""

    def sliced_weight(self) -> torch.Tensor:
        """The active filters (see :meth:`SlotConcat.concat_weight`)."""
        return self.concat_weight()


class SlotConcatLinear(SlotConcat, SlimLinear):
    """An ``nn.Linear`` whose input blocks follow different slots."""

    def sliced_weight(self, group: int = 0) -> torch.Tensor:
        """The active weight (see :meth:`SlotConcat.concat_weight`); one output group only."""
        return self.concat_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Linear map of the active input channels to the active outputs."""
        k_out = self.active_channels[1]
        bias = None if self.bias is None else self.bias[:k_out]
        return F.linear(x, self.sliced_weight(), bias)


def plan_conv(
    conv: nn.Module, name: str, in_slot: str | None, out_slot: str | None, groups: int = 1
) -> PlanEntry:
    """Plan one dense convolution; refuse grouped ones and other padding modes."""
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"{name}: only plain dense nn.Conv2d layers are slimmable here")
    if conv.in_channels % groups:
        raise ValueError(f"{name}: {conv.in_channels} inputs do not split into {groups} blocks")
    return conv, ("conv", in_slot, out_slot, groups)


def plan_conv_bn(
    unit: nn.Module,
    name: str,
    in_slot: str | None,
    out_slot: str,
    groups: int = 1,
    act: type[nn.Module] = nn.ReLU,
) -> list[PlanEntry]:
    """Plan a conv → BatchNorm → ``act`` unit (``conv_bn_relu``); refuse any other structure."""
    ok = (
        isinstance(unit, nn.Sequential)
        and len(unit) == 3
        and type(unit[2]) is act
        and type(unit[1]) is nn.BatchNorm2d
    )
    if not ok:
        raise ValueError(
            f"{name}: expected a conv → BatchNorm → {act.__name__} unit, got {type(unit).__name__}"
        )
    return [plan_conv(unit[0], f"{name}.0", in_slot, out_slot, groups), (unit[1], ("bn", out_slot))]


def plan_layer_norm(norm: nn.Module, name: str, slot: str) -> PlanEntry:
    """Plan a LayerNorm over one channel axis."""
    if type(norm) is not nn.LayerNorm or len(norm.normalized_shape) != 1:
        raise ValueError(f"{name}: expected an nn.LayerNorm over one axis, got {norm!r}")
    return norm, ("ln", slot)


def plan_concat(
    layer: nn.Module,
    name: str,
    in_blocks: Sequence[tuple[str | None, int]],
    out_slot: str | None,
) -> PlanEntry:
    """Plan an ``nn.Linear`` or dense 1×1-style ``nn.Conv2d`` reading concatenated blocks."""
    if type(layer) is nn.Conv2d:
        plan_conv(layer, name, None, None)  # the same structural checks
        total = layer.in_channels
    elif type(layer) is nn.Linear:
        total = layer.in_features
    else:
        raise ValueError(f"{name}: expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    if sum(size for _, size in in_blocks) != total:
        raise ValueError(f"{name}: blocks {list(in_blocks)} do not add up to {total} inputs")
    return layer, ("concat", tuple(in_blocks), out_slot)


def convert_entry(module: nn.Module, spec: tuple, widths: Mapping[str, Sequence[float]]) -> None:
    """Install the slot-following class of one plan entry on ``module``, in place."""
    kind, *args = spec
    if kind == "conv":
        module.__class__ = SlotConv2d
        module.init_slots(args[0], args[1], widths, args[2])
    elif kind == "bn":
        module.__class__ = SlotBatchNorm2d
        module.init_slot(args[0], widths)
    elif kind == "ln":
        module.__class__ = SlotLayerNorm
        module.init_slot(args[0], widths)
    elif kind == "concat":
        conv = isinstance(module, nn.Conv2d)
        module.__class__ = SlotConcatConv2d if conv else SlotConcatLinear
        if not conv:
            module.out_groups = 1
        in_total = module.in_channels if conv else module.in_features
        out_total = module.out_channels if conv else module.out_features
        module.init_blocks(args[0], args[1], widths, in_total, out_total)
    else:
        raise ValueError(f"unknown plan entry kind {kind!r}; expected conv, bn, ln or concat")
