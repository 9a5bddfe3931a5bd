"""Backbones: timm models as multi-level feature extractors."""

from vision_mtl.models.backbones.multimae_backbone import MultiMAEBackbone
from vision_mtl.models.backbones.timm_backbone import TimmBackbone

__all__ = ["MultiMAEBackbone", "TimmBackbone"]
