"""Models: backbones, decoders, heads and the multitask model."""

from vision_mtl.models.backbones import TimmBackbone
from vision_mtl.models.data_preprocessor import MultiTaskDataPreprocessor
from vision_mtl.models.decoders import BaselineDecoder, ConvHead, DecoderOutput, MultiTaskDecoder
from vision_mtl.models.multitask import MultiTaskModel

__all__ = [
    "BaselineDecoder",
    "ConvHead",
    "DecoderOutput",
    "MultiTaskDataPreprocessor",
    "MultiTaskDecoder",
    "MultiTaskModel",
    "TimmBackbone",
]
