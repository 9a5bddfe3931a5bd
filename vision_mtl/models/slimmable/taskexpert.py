"""The slimmable plan of :class:`~vision_mtl.models.decoders.task_expert.TaskExpertDecoder`.

Which width slot every layer of a TaskExpert decoder follows, and why:

* **Experts and the seed** (1×1 conv → BatchNorm → GELU) read the backbone level, so their input
  follows ``"encoder"``; their output is the *expert width* and follows the shared
  ``"decoder"`` slot.
* **The multi-task memory** follows ``"decoder"`` too, although each task has its own: a level
  mixes the memory in *as one more expert* (a gate-weighted sum with the experts' outputs), which
  needs equal channel counts, and every task's memory starts from the one shared seed. A memory
  width per task would force the shared experts and seed to run at the widest task's width and
  every task to slice them — shared compute set by a per-task choice, and a coupling a static
  (pruned) deployment could not express. So the per-task LayerNorms of the memory update
  (``layers.*.norms.<task>``) and the per-level predictions (``level_heads``, full outputs) read
  ``"decoder"``. The LayerNorms are :class:`~.slots.SlotLayerNorm`: their statistics cover the
  active channels only, as a LayerNorm of a narrower network would.
* **Gates** (one per task and level) always choose among all ``num_experts + 1`` experts: their
  outputs are never sliced. Their input is the concatenation of the level's feature (pooled for
  ``gate='sample'``) and the task's memory, so the first block follows ``"encoder"`` and the
  second ``"decoder"`` (:class:`~.slots.SlotConcatLinear` / :class:`~.slots.SlotConcatConv2d`).
* **Each task's path after the memory** — its ×2 upsampling convs and its refine conv, hence the
  task's returned feature and the head reading it — follows the task's slot: the first of these
  convs reads ``"decoder"`` (the final memory), the rest read and write the task's width.

A task's width therefore changes only that task's output; ``"decoder"`` changes every task's.
"""

from __future__ import annotations

from torch import nn

from vision_mtl.models.decoders.task_expert import TaskExpertDecoder
from vision_mtl.models.slimmable.slots import (
    DECODER,
    ENCODER,
    PlanEntry,
    plan_concat,
    plan_conv,
    plan_conv_bn,
    plan_layer_norm,
)


def _expert(unit: nn.Module, name: str) -> list[PlanEntry]:
    """An expert (or the seed): a pointwise conv from the encoder to the expert width."""
    return plan_conv_bn(unit, name, ENCODER, DECODER, act=nn.GELU)


def plan_task_expert(
    decoder: TaskExpertDecoder,
) -> tuple[list[PlanEntry], dict[str, str]]:
    """Every layer of a TaskExpert decoder with its slots (see the module docstring).

    Returns:
        The plan entries, and task → slot of the task's returned feature (the task's own slot).

    Raises:
        ValueError: a layer whose structure differs from what this plan expects.
    """
    channels = decoder.seed[0].out_channels
    plan = _expert(decoder.seed, "seed")
    for i, (layer, in_channels) in enumerate(zip(decoder.layers, decoder.in_channels, strict=True)):
        for j, unit in enumerate(layer.experts):
            plan += _expert(unit, f"layers.{i}.experts.{j}")
        blocks = ((ENCODER, int(in_channels)), (DECODER, channels))
        for task in decoder.tasks:
            plan.append(plan_concat(layer.gates[task], f"layers.{i}.gates.{task}", blocks, None))
            plan.append(plan_layer_norm(layer.norms[task], f"layers.{i}.norms.{task}", DECODER))
    for i, heads in enumerate(decoder.level_heads or ()):
        for task in decoder.tasks:
            plan.append(plan_conv(heads[task], f"level_heads.{i}.{task}", DECODER, None))
    for task in decoder.tasks:
        slot = DECODER
        for j, unit in enumerate(decoder.upsample[task]):
            plan += plan_conv_bn(unit, f"upsample.{task}.{j}", slot, task)
            slot = task
        plan += plan_conv_bn(decoder.refine[task], f"refine.{task}", slot, task)
    return plan, {task: task for task in decoder.tasks}
