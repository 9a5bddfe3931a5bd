"""NYUD-v2 in the multitask layout the ATRC/InvPT family distributes ("NYUDv2" archive).

Expected tree (REFERENCE.md §1)::

    NYUDv2/
      images/<id>.png          RGB, 425x560
      segmentation/<id>.png    uint8: 0 = void, 1..40 = classes
      depth/<id>.npy           float32 metres, 0 (or NaN) = invalid
      normals/<id>.png         RGB uint8, n = 2 v / 255 - 1, then unit-normalized
      edge/<id>.png            uint8 0/255
      gt_sets/train.txt        795 ids, gt_sets/val.txt 654 ids

Decoding: segmentation 1..40 become train ids 0..39 and void becomes 255; normals are decoded and
unit-normalized, and a pixel whose decoded vector is shorter than 0.5 (no true unit normal can be,
after 8-bit quantization) is invalid (all zeros); edges are ``value > 127``. Normals keep the
archive's own camera frame (x points right, so horizontal flips negate x as for every dataset).

The older MTI-Net "NYUD_MT" copy (480x640, .jpg) is a different layout and is not read here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vision_mtl.datasets.file_per_task import FilePerTaskDataset
from vision_mtl.registry import DATASETS

NYUD40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

LAYOUT = """NYUDv2/
  images/<id>.png  segmentation/<id>.png  depth/<id>.npy  normals/<id>.png  edge/<id>.png
  gt_sets/train.txt  gt_sets/val.txt"""
WHERE = (
    "Get the multitask NYUD-v2 archive distributed with the ATRC / InvPT code (NYUDv2.tar.gz) "
    "and unpack it; see docs/datasets.md."
)
# task -> (folder, file suffix)
FILES = {
    "semseg": ("segmentation", ".png"),
    "depth": ("depth", ".npy"),
    "normals": ("normals", ".png"),
    "edge": ("edge", ".png"),
}


def read_image_file(path: Path, color: bool) -> np.ndarray:
    """Read an image file (PNG, JPEG) as RGB (``color``) or single channel at its own bit depth;
    errors name the file."""
    flag = cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED
    image = cv2.imread(str(path), flag)
    if image is None:
        raise FileNotFoundError(f"cannot read {str(path)!r} (missing or not an image)")
    if color:
        return np.ascontiguousarray(image[..., ::-1])
    if image.ndim != 2:
        raise ValueError(f"{str(path)!r}: expected a single-channel image, got shape {image.shape}")
    return image


def decode_segmentation(raw: np.ndarray, path: Path) -> np.ndarray:
    """0 = void -> 255, 1..40 -> 0..39; anything above 40 is an error naming the file."""
    if raw.max(initial=0) > 40:
        raise ValueError(f"{str(path)!r}: NYUD-40 labels are 0..40, found {int(raw.max())}")
    labels = raw.astype(np.int64) - 1
    labels[raw == 0] = 255
    return labels.astype(np.uint8)


def decode_normals(rgb: np.ndarray) -> np.ndarray:
    """2 v / 255 - 1, unit-normalized; vectors shorter than 0.5 become invalid (zeros)."""
    normals = rgb.astype(np.float32) * (2.0 / 255.0) - 1.0
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = norm > 0.5
    return np.where(valid, normals / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def checked_depth(depth: np.ndarray, path: Path) -> np.ndarray:
    """Depth in metres as float32 with NaN (a distribution's "no reading") set to 0 = invalid.

    Infinite or negative values are not a convention of any NYUD-v2 release: they mean a broken
    file, and training on them fails later with a loss that names the task but not the file.
    """
    depth = depth.astype(np.float32)
    bad = np.isinf(depth) | (depth < 0)
    if bad.any():
        raise ValueError(
            f"{str(path)!r}: depth holds {int(bad.sum())} infinite or negative value(s) (e.g. "
            f"{float(depth[bad][0])}); expected metres >= 0, with 0 or NaN for no reading"
        )
    return np.nan_to_num(depth, nan=0.0)


@DATASETS.register_module()
class NYUDv2Dataset(FilePerTaskDataset):
    """NYUD-v2 (multitask version): semseg (40 classes), depth, normals, edge.

    Args:
        data_root: the unpacked ``NYUDv2`` folder.
        split: ``train`` or ``val`` (reads ``gt_sets/<split>.txt``).
        tasks: any of :attr:`PROVIDES`, or ``"all"``.
        pipeline: transforms applied to each sample.
    """

    PROVIDES = ("semseg", "depth", "normals", "edge")
    TASK_SETS = {"all": PROVIDES}
    num_classes = {"semseg": 40}
    class_names = {"semseg": NYUD40_CLASSES}
    FILES = FILES
    IMAGE = ("images", ".png")
    SPLIT_FILE = "gt_sets/{split}.txt"
    LAYOUT = LAYOUT
    WHERE = WHERE

    def read_image(self, path: Path) -> np.ndarray:
        return read_image_file(path, color=True)

    def decode(self, task: str, path: Path) -> np.ndarray:
        """The archive's encoding of each task (module docstring)."""
        if task == "semseg":
            return decode_segmentation(read_image_file(path, color=False), path)
        if task == "depth":
            depth = np.load(path, allow_pickle=False)
            if depth.ndim != 2:
                raise ValueError(f"{str(path)!r}: depth must be H×W, got shape {depth.shape}")
            return checked_depth(depth, path)
        if task == "normals":
            return decode_normals(read_image_file(path, color=True))
        return (read_image_file(path, color=False) > 127).astype(np.uint8)
