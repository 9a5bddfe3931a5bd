"""Datasets, transforms and the collate function."""

from vision_mtl.datasets.base import MultiTaskDataset
from vision_mtl.datasets.synthscenes import SynthScenesDataset
from vision_mtl.datasets.transforms import (
    PackMultiTaskInputs,
    RandomHorizontalFlip,
    multitask_collate,
)

__all__ = [
    "MultiTaskDataset",
    "PackMultiTaskInputs",
    "RandomHorizontalFlip",
    "SynthScenesDataset",
    "multitask_collate",
]
