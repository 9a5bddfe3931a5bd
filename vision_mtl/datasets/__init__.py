"""Datasets, transforms and the collate function."""

from vision_mtl.datasets.augment import MultiTaskAugment
from vision_mtl.datasets.base import MultiTaskDataset
from vision_mtl.datasets.cityscapes import CityscapesMTDataset
from vision_mtl.datasets.file_per_task import FilePerTaskDataset
from vision_mtl.datasets.folder_pseudo import PseudoLabelFolderDataset
from vision_mtl.datasets.nyud import NYUDv2Dataset
from vision_mtl.datasets.pascal_context import PascalContextMTDataset
from vision_mtl.datasets.synthscenes import SynthScenesDataset
from vision_mtl.datasets.transforms import (
    PackMultiTaskInputs,
    RandomHorizontalFlip,
    multitask_collate,
)

__all__ = [
    "FilePerTaskDataset",
    "CityscapesMTDataset",
    "MultiTaskAugment",
    "MultiTaskDataset",
    "NYUDv2Dataset",
    "PackMultiTaskInputs",
    "PascalContextMTDataset",
    "PseudoLabelFolderDataset",
    "RandomHorizontalFlip",
    "SynthScenesDataset",
    "multitask_collate",
]
