"""Slimmable multitask decoders and heads: shared widths and one width per task.

``make_decoder_slimmable(decoder, heads)`` converts a built decoder and its per-task heads in
place, like :func:`~vision_mtl.models.slimmable.convert.make_slimmable` does for a backbone: each
``nn.Conv2d`` / ``nn.BatchNorm2d`` gets the class of a slimmable counterpart and computes with the
first k channels of its own parameters, so one parameter set serves every width.

Unlike a backbone, whose layers all follow one width, a multitask decoder has several *width
slots*, and every layer's input and output channels each follow one of them:

* ``"encoder"`` (shared) — the backbone's active width: the channels the decoder receives;
* ``"decoder"`` (shared) — the fused feature map every task reads;
* one slot per task (per task), named after the task — that task's head. The task's output layer
  always keeps its full output channels (class count, 1 for depth, 3 for normals).

A layer's width table is therefore keyed by ``(input width, output width)`` pairs of its two
slots, and a *configuration* — ``{"encoder": 0.5, "decoder": 0.5, "semseg": 1.0, ...}`` — sets
every layer at once (:func:`set_decoder_configuration`). Batch norms keep running statistics per
width of their slot (:class:`~vision_mtl.models.slimmable.layers.SwitchableBatchNorm2d`). Those
statistics are keyed by the slot's own width only, although a layer's inputs also depend on the
upstream slots (a head's batch norm at task width 0.25 sees different features at decoder widths
0.25 and 1.0): after training over mixed configurations, recalibrate them for the configuration
that will be deployed.

Only the widths given at conversion are offered per slot; anything else raises ``ValueError``.
Each decoder type declares its layers' slots in :data:`DECODER_PLANS` (only
:class:`~vision_mtl.models.decoders.baseline.BaselineDecoder` for now); heads must be
:class:`~vision_mtl.models.decoders.heads.ConvHead`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from vision_mtl.models.decoders.baseline import BaselineDecoder
from vision_mtl.models.decoders.heads import ConvHead
from vision_mtl.models.slimmable.convert import DEFAULT_WIDTHS
from vision_mtl.models.slimmable.layers import SlimConv2d, SwitchableBatchNorm2d, channels_at

ENCODER = "encoder"
DECODER = "decoder"
#: kinds of width slots reported by :func:`decoder_width_slots`
SHARED = "shared"
PER_TASK = "per task"

#: one plan entry: a layer and how it slims — ("conv", input slot, output slot, input groups)
#: or ("bn", slot); a ``None`` slot keeps that side at full width.
PlanEntry = tuple[nn.Module, tuple]


class SlotLayer:
    """Mixin: a slimmable layer whose width follows named slots of a configuration."""

    def slot_key(self, config: Mapping[str, float]) -> object:
        """The key of this layer's width table selected by ``config``."""
        raise NotImplementedError

    def set_configuration(self, config: Mapping[str, float]) -> None:
        """Make the widths of ``config`` (slot → width) the active ones."""
        self.set_width(self.slot_key(config))


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
        in_widths = (1.0,) if in_slot is None else tuple(widths[in_slot])
        out_widths = (1.0,) if out_slot is None else tuple(widths[out_slot])
        k_in = {
            w: self.in_channels if in_slot is None else channels_at(w, block) * in_groups
            for w in in_widths
        }
        k_out = {
            w: self.out_channels if out_slot is None else channels_at(w, self.out_channels)
            for w in out_widths
        }
        table = {
            (w_in, w_out): (k_in[w_in], k_out[w_out]) for w_in in in_widths for w_out in out_widths
        }
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


def _conv_bn(
    unit: nn.Module, name: str, in_slot: str, out_slot: str, groups: int = 1
) -> list[PlanEntry]:
    """Plan a ``conv_bn_relu`` unit; refuse any other structure."""
    ok = (
        isinstance(unit, nn.Sequential)
        and len(unit) == 3
        and isinstance(unit[2], nn.ReLU)
        and type(unit[1]) is nn.BatchNorm2d
    )
    if not ok:
        raise ValueError(f"{name}: expected a conv_bn_relu unit, got {type(unit).__name__}")
    return [_conv(unit[0], f"{name}.0", in_slot, out_slot, groups), (unit[1], ("bn", out_slot))]


def _conv(
    conv: nn.Module, name: str, in_slot: str | None, out_slot: str | None, groups: int = 1
) -> PlanEntry:
    """Plan one dense convolution; refuse grouped ones and other padding modes."""
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"{name}: only plain dense nn.Conv2d layers are slimmable here")
    if conv.in_channels % groups:
        raise ValueError(f"{name}: {conv.in_channels} inputs do not split into {groups} blocks")
    return conv, ("conv", in_slot, out_slot, groups)


def _plan_baseline(decoder: BaselineDecoder) -> list[PlanEntry]:
    """Laterals read the encoder width and write the decoder width; the rest stays at it."""
    plan: list[PlanEntry] = []
    for i, unit in enumerate(decoder.lateral):
        plan += _conv_bn(unit, f"lateral.{i}", ENCODER, DECODER)
    plan += _conv_bn(decoder.fuse, "fuse", DECODER, DECODER, groups=len(decoder.lateral))
    for i, unit in enumerate(decoder.upsample):
        plan += _conv_bn(unit, f"upsample.{i}", DECODER, DECODER)
    return plan


#: decoder type → function listing its layers and their slots; add TaskExpert etc. here
DECODER_PLANS: dict[type, Callable[[nn.Module], list[PlanEntry]]] = {
    BaselineDecoder: _plan_baseline,
}


def _plan_head(head: nn.Module, task: str) -> list[PlanEntry]:
    """Hidden blocks follow the task's slot; the prediction layer keeps its full outputs."""
    if type(head) is not ConvHead:
        raise TypeError(f"heads.{task}: only ConvHead heads are slimmable, got {type(head)}")
    plan: list[PlanEntry] = []
    slot = DECODER
    for i, unit in enumerate(head.convs):
        plan += _conv_bn(unit, f"heads.{task}.convs.{i}", slot, task)
        slot = task
    plan.append(_conv(head.predict, f"heads.{task}.predict", slot, None))
    return plan


def make_decoder_slimmable(
    decoder: nn.Module,
    heads: Mapping[str, nn.Module],
    widths: Sequence[float] = DEFAULT_WIDTHS,
    encoder_widths: Sequence[float] | None = None,
) -> nn.Module:
    """Convert a built decoder and its per-task heads to slot-following slimmable layers.

    Args:
        decoder: a built decoder of a type listed in :data:`DECODER_PLANS`.
        heads: task → head (``MultiTaskModel.heads``), one per task of ``decoder``.
        widths: widths offered by the ``"decoder"`` slot and every task slot, each in (0, 1].
        encoder_widths: widths of the ``"encoder"`` slot — the backbone's widths
            (``slimmable_widths(backbone)``); defaults to ``widths``.

    Returns:
        ``decoder``, now at the widest configuration. Parameters stay the same objects.

    Raises:
        TypeError: a decoder or head type that is not slimmable yet.
        ValueError: bad widths, tasks of ``heads`` other than the decoder's, a layer the plan does
            not cover, or an already converted decoder (nothing is changed then).
    """
    plan = plan_decoder(decoder, heads)
    tasks = list(decoder.tasks)
    offered = _check_widths(widths)
    slot_widths = {ENCODER: _check_widths(encoder_widths or widths), DECODER: offered}
    slot_widths.update({t: offered for t in tasks})

    for module, (kind, *slots) in plan:
        if kind == "conv":
            module.__class__ = SlotConv2d
            module.init_slots(slots[0], slots[1], slot_widths, slots[2])
        else:
            module.__class__ = SlotBatchNorm2d
            module.init_slot(slots[0], slot_widths)
    decoder.slim_slots = {ENCODER: SHARED, DECODER: SHARED, **{t: PER_TASK for t in tasks}}
    decoder.slim_widths = slot_widths
    decoder.slim_config = {slot: max(w) for slot, w in slot_widths.items()}
    decoder.register_forward_pre_hook(_check_features)
    return decoder


def plan_decoder(decoder: nn.Module, heads: Mapping[str, nn.Module]) -> list[PlanEntry]:
    """Every layer of ``decoder`` and ``heads`` with its slots; changes nothing.

    Lets a caller (e.g. :func:`vision_mtl.models.slimmable.model.make_model_slimmable`) find out
    whether the conversion would succeed before converting anything else.

    Raises:
        TypeError: a decoder or head type that is not slimmable yet.
        ValueError: an already converted decoder, heads not matching its tasks, or a layer the
            plan does not cover.
    """
    if "slim_slots" in decoder.__dict__:
        raise ValueError(f"{type(decoder).__name__} is already slimmable")
    if type(decoder) not in DECODER_PLANS:
        supported = [t.__name__ for t in DECODER_PLANS]
        raise TypeError(f"{type(decoder).__name__} is not slimmable yet; supported: {supported}")
    tasks = list(decoder.tasks)
    if sorted(heads) != sorted(tasks):
        raise ValueError(f"heads {sorted(heads)} do not match the decoder's tasks {tasks}")
    if ENCODER in tasks or DECODER in tasks:
        raise ValueError(f"a task may not be named {ENCODER!r} or {DECODER!r}")
    plan = DECODER_PLANS[type(decoder)](decoder)
    for task in tasks:
        plan += _plan_head(heads[task], task)
    covered = {id(module) for module, _ in plan}
    for root, prefix in ((decoder, "decoder"), *((heads[t], f"heads.{t}") for t in tasks)):
        for name, module in root.named_modules():
            has_params = any(True for _ in module.parameters(recurse=False))
            if has_params and id(module) not in covered:
                raise ValueError(f"{prefix}.{name} ({type(module).__name__}) is not slimmable")
    return plan


def _check_widths(widths: Sequence[float]) -> tuple[float, ...]:
    offered = tuple(sorted({float(w) for w in widths}))
    if not offered or not all(0.0 < w <= 1.0 for w in offered):
        raise ValueError(f"widths must be a non-empty set of numbers in (0, 1], got {widths!r}")
    return offered


def _state(decoder: nn.Module) -> nn.Module:
    if "slim_slots" not in decoder.__dict__:
        raise ValueError(
            f"{type(decoder).__name__} is not slimmable: call make_decoder_slimmable first"
        )
    return decoder


def decoder_width_slots(decoder: nn.Module) -> dict[str, str]:
    """Slot name → :data:`SHARED` or :data:`PER_TASK` of a converted decoder."""
    return dict(_state(decoder).slim_slots)


def decoder_slot_widths(decoder: nn.Module) -> dict[str, tuple[float, ...]]:
    """Slot name → the widths it offers."""
    return dict(_state(decoder).slim_widths)


def check_configuration(decoder: nn.Module, config: Mapping[str, float]) -> dict[str, float]:
    """The complete configuration ``config`` asks for: given slots set, the others unchanged.

    Raises:
        ValueError: an unknown slot, or a width the slot does not offer (naming the allowed
            slots or widths).
    """
    offered = _state(decoder).slim_widths
    full = dict(decoder.slim_config)
    for slot, width in config.items():
        if slot not in offered:
            raise ValueError(f"unknown width slot {slot!r}; slots: {list(offered)}")
        number = isinstance(width, int | float) and not isinstance(width, bool)
        match = [w for w in offered[slot] if number and abs(float(width) - w) < 1e-9]
        if not match:
            raise ValueError(
                f"width {width} is not offered for slot {slot!r}; allowed widths: "
                f"{list(offered[slot])} (only trained widths are offered)"
            )
        full[slot] = match[0]
    return full


def set_decoder_configuration(
    decoder: nn.Module, heads: Mapping[str, nn.Module], config: Mapping[str, float]
) -> dict[str, float]:
    """Set the widths of ``decoder`` and ``heads`` (slots missing in ``config`` keep theirs).

    The ``"encoder"`` slot only tells the decoder which channels to expect: the backbone's own
    width is set with ``set_width`` (or both at once with
    :func:`vision_mtl.models.slimmable.model.set_configuration`).

    Returns:
        The previous complete configuration.
    """
    full = check_configuration(decoder, config)
    previous = dict(decoder.slim_config)
    for root in (decoder, *heads.values()):
        for module in root.modules():
            if isinstance(module, SlotLayer):
                module.set_configuration(full)
    decoder.slim_config = full
    return previous


def _check_features(decoder: nn.Module, args: tuple) -> None:
    """Forward pre-hook: refuse features whose channels are not the configured encoder width's."""
    width = decoder.slim_config[ENCODER]
    expected = [channels_at(width, c) for c in decoder.in_channels]
    got = [int(f.shape[1]) for f in args[0]]
    if got != expected:
        raise ValueError(
            f"{type(decoder).__name__} is configured for encoder width {width} (channels "
            f"{expected}) but received features with channels {got}; set the backbone and the "
            "decoder together with set_configuration(model, config)"
        )
