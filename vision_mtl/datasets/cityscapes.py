"""Cityscapes for multitask learning: semantic segmentation (19 classes) and disparity.

Expected tree, as the Cityscapes site distributes it (leftImg8bit_trainvaltest.zip,
gtFine_trainvaltest.zip, disparity_trainvaltest.zip, camera_trainvaltest.zip)::

    cityscapes/
      leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png
      gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png
      disparity/{train,val}/<city>/<stem>_disparity.png
      camera/{train,val}/<city>/<stem>_camera.json          (only for metric depth)

Raw label ids become the 19 train ids through the ``cityscapesscripts`` label table (never a
hand-copied one: one public repo maps "sky" through raw id 10, which is rail track); ids without a
train id become 255. Disparity is ``(raw - 1) / 256`` where ``raw > 0``; raw 0 is invalid and
stays 0, so no invalid pixel can leak into a loss. Metric depth, when asked for, is
``baseline * fx / disparity`` from the camera file. Published multitask numbers score disparity on
pixels with 0 < gt < 80: set that on the metric (``DepthMetric(max_depth=80)``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vision_mtl.datasets.base import MultiTaskDataset
from vision_mtl.datasets.nyud import read_image_file
from vision_mtl.registry import DATASETS

LAYOUT = """cityscapes/
  leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
  gtFine/<split>/<city>/<stem>_gtFine_labelIds.png
  disparity/<split>/<city>/<stem>_disparity.png
  camera/<split>/<city>/<stem>_camera.json   (metric depth only)"""
WHERE = (
    "Download leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip, disparity_trainvaltest.zip "
    "(and camera_trainvaltest.zip for depth) from the Cityscapes site and unpack them into one "
    "folder; see docs/datasets.md."
)


@functools.cache
def label_table() -> tuple[np.ndarray, tuple[str, ...]]:
    """Raw id -> train id lookup (255 where none) and the 19 class names in train-id order.

    Read from cityscapesscripts when first needed (building a dataset), not at import.
    """
    from cityscapesscripts.helpers.labels import labels

    lookup = np.full(256, 255, np.uint8)
    names = {}
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < 255:
            lookup[label.id] = label.trainId
            names[label.trainId] = label.name
    names = tuple(names[i] for i in sorted(names))
    if len(names) != NUM_CLASSES:
        raise RuntimeError(
            f"cityscapesscripts lists {len(names)} train ids, expected {NUM_CLASSES}"
        )
    return lookup, names


NUM_CLASSES = 19


def decode_disparity(raw: np.ndarray) -> np.ndarray:
    """uint16 PNG values -> disparity in pixels: (raw - 1) / 256 where raw > 0, else 0."""
    raw = raw.astype(np.float32)
    return np.where(raw > 0, (raw - 1.0) / 256.0, 0.0).astype(np.float32)


@DATASETS.register_module()
class CityscapesMTDataset(MultiTaskDataset):
    """Cityscapes with ``semseg`` (19 train ids), ``disparity`` and optional metric ``depth``.

    Args:
        data_root: the folder holding ``leftImg8bit``, ``gtFine``, ``disparity`` (and ``camera``).
        split: ``train`` or ``val``.
        tasks: any of :attr:`PROVIDES`; ``"all"`` means semseg and disparity.
        pipeline: transforms applied to each sample.
    """

    PROVIDES = ("semseg", "depth", "disparity")
    TASK_SETS = {"all": ("semseg", "disparity")}
    num_classes = {"semseg": NUM_CLASSES}

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        tasks: str | Sequence[str] = "all",
        pipeline: Sequence[Any] = (),
    ) -> None:
        super().__init__(tasks=tasks, pipeline=pipeline)
        self.lookup, names = label_table()
        self.class_names = {"semseg": names}
        if split not in ("train", "val"):
            raise ValueError(f"CityscapesMTDataset split must be 'train' or 'val', got {split!r}")
        self.root, self.split = Path(data_root), split
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise FileNotFoundError(
                f"Cityscapes folder {str(images)!r} does not exist. Expected layout:\n{LAYOUT}\n{WHERE}"
            )
        self.stems = sorted(
            str(p.relative_to(images))[: -len("_leftImg8bit.png")]
            for p in images.glob("*/*_leftImg8bit.png")
        )
        if not self.stems:
            raise FileNotFoundError(
                f"no '<city>/<stem>_leftImg8bit.png' images under {str(images)!r}. "
                f"Expected layout:\n{LAYOUT}\n{WHERE}"
            )

    def __len__(self) -> int:
        return len(self.stems)

    def path(self, kind: str, stem: str) -> Path:
        """The file of ``kind`` (leftImg8bit, gtFine, disparity, camera) for ``<city>/<stem>``."""
        suffix = {
            "leftImg8bit": "_leftImg8bit.png",
            "gtFine": "_gtFine_labelIds.png",
            "disparity": "_disparity.png",
            "camera": "_camera.json",
        }[kind]
        return self.root / kind / self.split / f"{stem}{suffix}"

    def _require(self, path: Path, stem: str, task: str) -> Path:
        if not path.is_file():
            raise FileNotFoundError(
                f"Cityscapes sample {stem!r}: {str(path)!r} is missing (task {task!r}). "
                f"Expected layout:\n{LAYOUT}"
            )
        return path

    def load_sample(self, index: int) -> dict:
        """Read and decode the image and every requested task of sample ``index``."""
        stem = self.stems[index]
        sample: dict = {"image": read_image_file(self.path("leftImg8bit", stem), color=True)}
        if "semseg" in self.tasks:
            raw = read_image_file(
                self._require(self.path("gtFine", stem), stem, "semseg"), color=False
            )
            sample["semseg"] = self.lookup[raw.astype(np.uint8)]
        if "disparity" in self.tasks or "depth" in self.tasks:
            path = self._require(self.path("disparity", stem), stem, "disparity")
            disparity = decode_disparity(read_image_file(path, color=False))
            if "disparity" in self.tasks:
                sample["disparity"] = disparity
            if "depth" in self.tasks:
                sample["depth"] = self._depth(disparity, stem)
        self.check_map_sizes(sample, stem)
        shape = sample["image"].shape[:2]
        sample["meta"] = dict(name=stem.replace("/", "_"), ori_shape=shape, index=index)
        return sample

    def _depth(self, disparity: np.ndarray, stem: str) -> np.ndarray:
        """Metric depth = baseline * fx / disparity (0 where disparity is invalid)."""
        path = self._require(self.path("camera", stem), stem, "depth")
        try:
            camera = json.loads(path.read_text())
            scale = float(camera["extrinsic"]["baseline"]) * float(camera["intrinsic"]["fx"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{str(path)!r}: expected extrinsic.baseline and intrinsic.fx ({err})"
            ) from None
        valid = disparity > 0
        return np.where(valid, scale / np.where(valid, disparity, 1.0), 0.0).astype(np.float32)
