"""TaskExpert-style decoder: gated mixtures of experts at several depths, with a task memory.

TaskExpert (Ye & Xu, ICCV 2023) has no released code and only its abstract and overview figure
describe it: shared expert networks decompose a backbone feature into task-generic features;
dynamic (input-dependent) task-specific gates assemble task features from them; these modules
sit at several backbone layers and read a multi-task feature memory as one more expert, update
it at every layer, and the last memory feeds the task predictions. Everything finer is chosen
here, made a parameter, and listed with its reason in docs/decoders.md:

1. **Experts.** At every tapped backbone level, ``num_experts`` experts, each a 1×1 conv →
   BatchNorm → GELU to ``channels`` (default 8 × 256): pointwise, so experts split *what* a
   feature encodes rather than where, and cheap enough to run at every depth.
2. **Gates.** One gate per task and level, softmax over the experts plus the memory.
   ``gate='sample'`` (default): one weight vector per sample from global average pooling of the
   level's feature and of the task's memory, through a linear layer. ``gate='pixel'``: a 1×1
   conv over the same two maps gives weights per position. :meth:`TaskExpertDecoder.route`
   returns the gates of every level.
3. **Multi-task feature memory.** One map per task at the finest tapped stride. It starts as a
   projection of the first tapped level shared by all tasks, is read at every level as the extra
   expert (resized to that level) and, after the level, updated with the level's task feature:
   ``memory_update='residual'`` adds its LayerNorm (``m ← m + LN(f)``, so early, finer levels
   reach the heads), ``'replace'`` keeps only the latest (``m ← LN(f)``, the no-memory ablation).
4. **Heads.** The final memory is brought to ``out_stride`` by per-task ×2 bilinear steps, each
   followed by a 3×3 conv, and returned as the task's feature. With ``supervise_levels`` each
   level's task features are also supervised in training through a 1×1 prediction (loss keys
   ``loss_<task>_expert<i>``), as InvPT supervises its preliminary predictions.

No load-balancing loss is added; none is described.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vision_mtl.models.decoders.base import DecoderOutput, MultiTaskDecoder
from vision_mtl.models.decoders.layers import channel_norm, conv_bn_relu, resize, upsample_steps
from vision_mtl.registry import MODELS

MEMORY_UPDATES = ("residual", "replace")
GATES = ("sample", "pixel")


def expert(in_channels: int, channels: int) -> nn.Sequential:
    """One expert network: a pointwise projection to the shared expert width."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.GELU()
    )


def _pool_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize the memory to a level's grid: averaging when shrinking by a whole factor.

    Bilinear shrinking by 4 or 8 would sample a few pixels and alias; average pooling keeps all
    of them when the factor divides both sides, and bilinear resizing covers the rest.
    """
    h, w = x.shape[-2:]
    if (h, w) != tuple(size) and h % size[0] == 0 and w % size[1] == 0:
        fh, fw = h // size[0], w // size[1]
        if fh == fw:
            return F.avg_pool2d(x, fh, fh)
    return resize(x, size)


@dataclass
class TaskExpertTrace:
    """Everything one forward pass routed, for training and for inspection.

    Attributes:
        features: task → returned feature map at ``out_stride``.
        aux_logits: ``expert<i>`` → task → logits of level ``i``'s task feature (in training
            mode only: they serve the intermediate losses).
        gates: per level, task → gate weights, B×(E+1) (``gate='sample'``) or B×(E+1)×H×W
            (``gate='pixel'``); index E is the memory's.
        memory: per level, task → the memory after that level's update (index 0 is the seed).
    """

    features: dict[str, torch.Tensor]
    aux_logits: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    gates: list[dict[str, torch.Tensor]] = field(default_factory=list)
    memory: list[dict[str, torch.Tensor]] = field(default_factory=list)


class ExpertLayer(nn.Module):
    """The mixture-of-experts module of one backbone level (experts, gates, memory update)."""

    def __init__(
        self, in_channels: int, channels: int, tasks: Sequence[str], num_experts: int, gate: str
    ) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.per_pixel = gate == "pixel"
        self.experts = nn.ModuleList(expert(in_channels, channels) for _ in range(num_experts))
        width, choices = in_channels + channels, num_experts + 1
        self.gates = nn.ModuleDict(
            {
                t: nn.Conv2d(width, choices, 1) if self.per_pixel else nn.Linear(width, choices)
                for t in self.tasks
            }
        )
        self.norms = nn.ModuleDict({t: nn.LayerNorm(channels) for t in self.tasks})

    def forward(
        self, x: torch.Tensor, memory: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Mix the experts and the (resized) memory per task; returns features and gates."""
        experts = [e(x) for e in self.experts]
        pooled = x.mean(dim=(2, 3))
        features, gates = {}, {}
        for task in self.tasks:
            read = _pool_to(memory[task], x.shape[-2:])
            if self.per_pixel:
                weights = self.gates[task](torch.cat([x, read], dim=1)).softmax(dim=1)
                spatial = weights  # B × (E+1) × H × W
            else:
                gate_in = torch.cat([pooled, memory[task].mean(dim=(2, 3))], dim=1)
                weights = self.gates[task](gate_in).softmax(dim=1)
                spatial = weights[:, :, None, None]
            # A sum of per-expert products rather than a product with stacked experts: the same
            # values, and channel pruning (DepGraph) sees each gate as a broadcast scale.
            features[task] = sum(
                (spatial[:, i : i + 1] * f for i, f in enumerate([*experts, read])),
            )
            gates[task] = weights
        return features, gates


@MODELS.register_module()
class TaskExpertDecoder(MultiTaskDecoder):
    """TaskExpert-style decoder (see the module docstring for the design and its choices).

    Args:
        in_channels: channels of each backbone level (each gets its own expert layer).
        in_strides: strides of each backbone level.
        tasks: task names.
        num_classes: class counts of class tasks (needed for the per-level supervision).
        num_experts: experts per level.
        channels: width of every expert, of the memory and of the returned features.
        gate: ``'sample'`` (one weight per expert and sample) or ``'pixel'`` (per position).
        memory_update: ``'residual'`` (``m ← m + LN(f)``) or ``'replace'`` (``m ← LN(f)``).
        supervise_levels: emit each level's task predictions for intermediate losses.
        out_stride: stride of the returned features (the finest input stride divided by a
            power of two).
    """

    # Gates choose among a fixed number of experts; level heads write task predictions.
    unprunable = ("layers.*.gates.*", "level_heads.*")

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        tasks: Sequence[str],
        num_classes: dict[str, int] | None = None,
        num_experts: int = 8,
        channels: int = 256,
        gate: str = "sample",
        memory_update: str = "residual",
        supervise_levels: bool = True,
        out_stride: int | None = 4,
    ) -> None:
        super().__init__(in_channels, in_strides, tasks, num_classes)
        self.check_sizes(num_experts=num_experts, channels=channels)
        if memory_update not in MEMORY_UPDATES:
            raise ValueError(
                f"TaskExpertDecoder: memory_update {memory_update!r} is not one of {MEMORY_UPDATES}"
            )
        if gate not in GATES:
            raise ValueError(f"TaskExpertDecoder: gate {gate!r} is not one of {GATES}")
        self.memory_update = memory_update
        self.memory_stride = min(self.in_strides)
        steps, self.out_stride = upsample_steps(type(self).__name__, self.memory_stride, out_stride)
        t = self.tasks
        self.seed = expert(self.in_channels[0], channels)
        self.layers = nn.ModuleList(
            ExpertLayer(c, channels, t, num_experts, gate) for c in self.in_channels
        )
        self.level_heads = (
            nn.ModuleList(
                nn.ModuleDict({k: nn.Conv2d(channels, self.task_outputs(k), 1) for k in t})
                for _ in self.in_channels
            )
            if supervise_levels
            else None
        )
        self.upsample = nn.ModuleDict(
            {k: nn.ModuleList(conv_bn_relu(channels, channels) for _ in range(steps)) for k in t}
        )
        self.refine = nn.ModuleDict({k: conv_bn_relu(channels, channels) for k in t})
        self.out_channels = {k: channels for k in t}

    def route(self, features: Sequence[torch.Tensor]) -> TaskExpertTrace:
        """Run the decoder and keep every level's gates and memory."""
        if len(features) != len(self.layers):
            raise ValueError(
                f"TaskExpertDecoder: expected {len(self.layers)} feature maps (one per level), "
                f"got {len(features)}"
            )
        finest = min(range(len(features)), key=lambda i: self.in_strides[i])
        size = features[finest].shape[-2:]
        seed = resize(self.seed(features[0]), size)
        memory = {task: seed for task in self.tasks}
        trace = TaskExpertTrace(features={}, memory=[memory])
        for i, (layer, x) in enumerate(zip(self.layers, features, strict=True)):
            mixed, gates = layer(x, memory)
            if self.level_heads is not None and self.training:  # losses only; skip at inference
                heads = self.level_heads[i]
                trace.aux_logits[f"expert{i}"] = {k: heads[k](f) for k, f in mixed.items()}
            update = {k: channel_norm(layer.norms[k], resize(f, size)) for k, f in mixed.items()}
            if self.memory_update == "residual":
                memory = {k: memory[k] + update[k] for k in self.tasks}
            else:
                memory = update
            trace.gates.append(gates)
            trace.memory.append(memory)
        for task in self.tasks:
            x = memory[task]
            for conv in self.upsample[task]:
                x = conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
            trace.features[task] = self.refine[task](x)
        return trace

    def forward(self, features: Sequence[torch.Tensor]) -> DecoderOutput:
        trace = self.route(features)
        return DecoderOutput(features=trace.features, aux_logits=trace.aux_logits)
