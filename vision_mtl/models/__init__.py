"""Models: backbones, decoders, heads and the multitask model."""

from vision_mtl.models.backbones import TimmBackbone
from vision_mtl.models.data_preprocessor import MultiTaskDataPreprocessor
from vision_mtl.models.decoders import BaselineDecoder, ConvHead, DecoderOutput, MultiTaskDecoder
from vision_mtl.models.multimae import MultiMAE
from vision_mtl.models.multitask import MultiTaskModel
from vision_mtl.models.slimmable.multitask import SlimmableMultiTaskModel

__all__ = [
    "BaselineDecoder",
    "ConvHead",
    "DecoderOutput",
    "MultiTaskDataPreprocessor",
    "MultiTaskDecoder",
    "MultiMAE",
    "MultiTaskModel",
    "SlimmableMultiTaskModel",
    "TimmBackbone",
]
