"""Slimmable multitask decoders and heads: shared widths and one width per task.

``make_decoder_slimmable(decoder, heads)`` converts a built decoder and its per-task heads in
place, like :func:`~vision_mtl.models.slimmable.convert.make_slimmable` does for a backbone: each
``nn.Conv2d`` / ``nn.BatchNorm2d`` (and ``nn.LayerNorm`` / ``nn.Linear`` where a decoder has them)
gets the class of a slimmable counterpart and computes with the first k channels of its own
parameters, so one parameter set serves every width.

Unlike a backbone, whose layers all follow one width, a multitask decoder has several *width
slots*, and every layer's input and output channels each follow one of them:

* ``"encoder"`` (shared) — the backbone's active width: the channels the decoder receives;
* ``"decoder"`` (shared) — the features every task reads (the baseline's fused map,
  TaskExpert's experts and memory);
* one slot per task (per task), named after the task — that task's own path: its head, and the
  decoder layers only that task uses where a decoder declares so. The task's output layer always
  keeps its full output channels (class count, 1 for depth, 3 for normals).

A layer's width table is therefore keyed by the widths of its input and output slots, and a
*configuration* — ``{"encoder": 0.5, "decoder": 0.5, "semseg": 1.0, ...}`` — sets
every layer at once (:func:`set_decoder_configuration`). Batch norms keep running statistics per
width of their slot (:class:`~vision_mtl.models.slimmable.layers.SwitchableBatchNorm2d`). Those
statistics are keyed by the slot's own width only, although a layer's inputs also depend on the
upstream slots (a head's batch norm at task width 0.25 sees different features at decoder widths
0.25 and 1.0): after training over mixed configurations, recalibrate them for the configuration
that will be deployed.

Only the widths given at conversion are offered per slot; anything else raises ``ValueError``.

Each decoder type declares in :data:`DECODER_PLANS` which slots its layers follow — which widths
are shared and which per task — and which slot each task's returned feature has (what the
task's head reads):

* :class:`~vision_mtl.models.decoders.baseline.BaselineDecoder`: laterals read ``"encoder"``,
  everything else, including every task's feature, is at ``"decoder"``.
* :class:`~vision_mtl.models.decoders.task_expert.TaskExpertDecoder`
  (:mod:`~vision_mtl.models.slimmable.taskexpert`): the experts, the seed and the multi-task
  memory at ``"decoder"`` (the memory is mixed with the experts, so it needs their width), the
  gates reading ``"encoder"`` and ``"decoder"`` blocks with all their outputs kept, and each
  task's upsampling path — hence its feature — at the task's slot.

Heads must be :class:`~vision_mtl.models.decoders.heads.ConvHead`. The slot-following layers and
the plan entries live in :mod:`~vision_mtl.models.slimmable.slots`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn

from vision_mtl.models.decoders.baseline import BaselineDecoder
from vision_mtl.models.decoders.heads import ConvHead
from vision_mtl.models.decoders.task_expert import TaskExpertDecoder
from vision_mtl.models.slimmable.convert import DEFAULT_WIDTHS
from vision_mtl.models.slimmable.layers import channels_at
from vision_mtl.models.slimmable.slots import (
    DECODER,
    ENCODER,
    PER_TASK,
    SHARED,
    PlanEntry,
    SlotBatchNorm2d,
    SlotConv2d,
    SlotLayer,
    convert_entry,
    plan_conv,
    plan_conv_bn,
)
from vision_mtl.models.slimmable.taskexpert import plan_task_expert

__all__ = [
    "DECODER",
    "DECODER_PLANS",
    "ENCODER",
    "PER_TASK",
    "SHARED",
    "DecoderPlan",
    "SlotBatchNorm2d",
    "SlotConv2d",
    "check_configuration",
    "decoder_slot_widths",
    "decoder_width_slots",
    "make_decoder_slimmable",
    "plan_decoder",
    "set_decoder_configuration",
]

#: a decoder's plan: its layers with their slots, and task → slot of the feature the task's
#: head reads (the decoder's returned feature for that task)
DecoderPlan = tuple[list[PlanEntry], dict[str, str]]


def _plan_baseline(decoder: BaselineDecoder) -> DecoderPlan:
    """Laterals read the encoder width and write the decoder width; the rest stays at it."""
    plan: list[PlanEntry] = []
    for i, unit in enumerate(decoder.lateral):
        plan += plan_conv_bn(unit, f"lateral.{i}", ENCODER, DECODER)
    plan += plan_conv_bn(decoder.fuse, "fuse", DECODER, DECODER, groups=len(decoder.lateral))
    for i, unit in enumerate(decoder.upsample):
        plan += plan_conv_bn(unit, f"upsample.{i}", DECODER, DECODER)
    return plan, {task: DECODER for task in decoder.tasks}


#: decoder type → function listing its layers and their slots, and the slot of each task's
#: returned feature (what that task's head reads)
DECODER_PLANS: dict[type, Callable[[nn.Module], DecoderPlan]] = {
    BaselineDecoder: _plan_baseline,
    TaskExpertDecoder: plan_task_expert,
}


def _plan_head(head: nn.Module, task: str, in_slot: str) -> list[PlanEntry]:
    """Hidden blocks follow the task's slot; the prediction layer keeps its full outputs.

    ``in_slot`` is the slot of the decoder feature the head reads.
    """
    if type(head) is not ConvHead:
        raise TypeError(f"heads.{task}: only ConvHead heads are slimmable, got {type(head)}")
    plan: list[PlanEntry] = []
    slot = in_slot
    for i, unit in enumerate(head.convs):
        plan += plan_conv_bn(unit, f"heads.{task}.convs.{i}", slot, task)
        slot = task
    plan.append(plan_conv(head.predict, f"heads.{task}.predict", slot, None))
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

    for module, spec in plan:
        convert_entry(module, spec, slot_widths)
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
    plan, feature_slots = DECODER_PLANS[type(decoder)](decoder)
    for task in tasks:
        plan += _plan_head(heads[task], task, feature_slots[task])
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
