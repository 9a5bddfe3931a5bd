"""Multitask decoders and per-task heads."""

from vision_mtl.models.decoders.base import DecoderOutput, MultiTaskDecoder
from vision_mtl.models.decoders.baseline import BaselineDecoder
from vision_mtl.models.decoders.cross_task_attention import CrossTaskAttentionDecoder
from vision_mtl.models.decoders.heads import ConvHead
from vision_mtl.models.decoders.task_expert import TaskExpertDecoder, TaskExpertTrace

__all__ = [
    "BaselineDecoder",
    "ConvHead",
    "CrossTaskAttentionDecoder",
    "DecoderOutput",
    "MultiTaskDecoder",
    "TaskExpertDecoder",
    "TaskExpertTrace",
]
