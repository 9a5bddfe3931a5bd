"""The decoder interface every multitask decoder implements.

A decoder receives the backbone's feature maps (with the channels and strides the backbone
reports) and the task list, and returns one feature map per task; per-task heads
(:mod:`vision_mtl.models.decoders.heads`) turn those into outputs. Decoders that supervise
intermediate predictions (cross-task attention, TaskExpert) return them in
:attr:`DecoderOutput.aux_logits` and the model adds a loss for each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from vision_mtl.tasks import check_tasks, get_task


@dataclass
class DecoderOutput:
    """What a decoder returns.

    Attributes:
        features: task name → feature map (B×C_t×H×W at :attr:`MultiTaskDecoder.out_stride`).
        aux_logits: stage name → task name → raw logits with the task's output channels, at any
            resolution; each becomes loss key ``loss_<task>_<stage>``.
    """

    features: dict[str, torch.Tensor]
    aux_logits: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


class MultiTaskDecoder(nn.Module):
    """Base class: records the inputs a decoder is sized from.

    Args:
        in_channels: channels of each backbone level.
        in_strides: stride of each backbone level with respect to the input image.
        tasks: names of the tasks to decode (TaskSpec names).
        num_classes: class counts for tasks whose output width is the dataset's class count;
            needed only by decoders that emit intermediate logits.

    Subclasses set :attr:`out_channels` (task → channels) and :attr:`out_stride`, and list in
    :attr:`unprunable` (fnmatch patterns of their own module names) the layers whose output
    width is fixed by the design rather than learned: intermediate task predictions, gates
    over a fixed number of experts, attention over a fixed number of heads.
    """

    unprunable: tuple[str, ...] = ()

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        tasks: Sequence[str],
        num_classes: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError(
                f"{type(self).__name__}: in_channels {list(in_channels)} and in_strides "
                f"{list(in_strides)} must be non-empty and of equal length"
            )
        self.in_channels = [int(c) for c in in_channels]
        self.in_strides = [int(s) for s in in_strides]
        self.tasks = check_tasks(tasks, list(tasks))
        self.num_classes = dict(num_classes or {})
        self.out_channels: dict[str, int] = {}
        self.out_stride: int = min(self.in_strides)

    def check_sizes(self, **sizes: int | Sequence[int]) -> None:
        """Refuse a width, count or list of widths that is not made of positive integers.

        A config override such as ``decoder.channels=abc`` otherwise fails deep inside a layer
        constructor with an unrelated message; this names the decoder, the key and the value.
        """
        for key, value in sizes.items():
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if not values or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
            ):
                raise ValueError(
                    f"{type(self).__name__}: {key} must be a positive integer"
                    f"{' (or a list of them)' if isinstance(value, (list, tuple)) else ''}, "
                    f"got {value!r}"
                )

    def task_outputs(self, task: str) -> int:
        """Output channels of ``task``'s logits (for decoders with intermediate supervision)."""
        return get_task(task).num_outputs(self.num_classes.get(task))

    def forward(self, features: Sequence[torch.Tensor]) -> DecoderOutput:
        raise NotImplementedError
