"""A folder of RGB images with matching pseudo-label folders, for MultiMAE pretraining.

MultiMAE (Bachmann et al., ECCV 2022) pretrains on unlabelled images with *pseudo labels*:
depth from a monocular depth network and semantics from a segmentation network, computed once
and stored next to the images. :class:`PseudoLabelFolderDataset` reads such a folder::

    root/
      rgb/<id>.png|.jpg|.jpeg   RGB images (any size; every id is a sample)
      depth/<id>.png            single channel: uint16 (e.g. millimetres) or uint8; 0 = no depth
      semseg/<id>.png           single channel uint8 class ids 0..num_classes-1, 255 = unlabelled

The sample ids are the file stems of ``rgb/`` (sorted); every id must have its depth and
semseg files (a missing one is an error naming it). There is no split: every image is a training
sample.

**Depth scale.** Depth in metres is ``value * depth_scale``: the default ``0.001`` reads uint16
millimetres (the common 16-bit depth PNG). A uint8 or relative pseudo depth (a network's output
rescaled to 0..255, say) needs no metric scale for MultiMAE, which standardizes depth per image
before using it; set ``depth_scale`` to whatever makes the values meaningful to you (e.g.
``1/255`` for 0..1). 0 always means "no depth".

``image_size`` (H, W) resizes every sample on reading (image bilinear, or area when shrinking;
depth and labels nearest, so depth values and class ids are never mixed); ``None`` keeps each
file's size (a batch then needs same-size files or a cropping pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from vision_mtl.datasets.base import MultiTaskDataset
from vision_mtl.datasets.nyud import read_image_file
from vision_mtl.paths import check_sample_id
from vision_mtl.registry import DATASETS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUT = """root/
  rgb/<id>.png|.jpg|.jpeg   depth/<id>.png (uint16 or uint8, 0 = none)
  semseg/<id>.png (uint8 class ids, 255 = unlabelled)"""


@DATASETS.register_module()
class PseudoLabelFolderDataset(MultiTaskDataset):
    """RGB images with pseudo-label depth and semantics (module docstring for the layout).

    Args:
        data_root: the folder holding ``rgb/``, ``depth/`` and ``semseg/``.
        num_classes: semantic classes of the pseudo labels (ids ``0 .. num_classes - 1``).
        tasks: any of ``semseg``, ``depth`` (default both); only their folders are read.
        depth_scale: metres per stored depth unit (``0.001``: uint16 millimetres).
        image_size: ``(H, W)`` every sample is resized to, or ``None`` to keep file sizes.
        class_names: optional names of the classes, for pictures.
        pipeline: transforms applied to each sample.
    """

    PROVIDES: ClassVar[tuple[str, ...]] = ("semseg", "depth")
    TASK_SETS: ClassVar[dict[str, tuple[str, ...]]] = {"all": PROVIDES}
    FOLDERS: ClassVar[dict[str, str]] = {"image": "rgb", "depth": "depth", "semseg": "semseg"}

    def __init__(
        self,
        data_root: str,
        num_classes: int,
        tasks: str | Sequence[str] = "all",
        depth_scale: float = 0.001,
        image_size: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        pipeline: Sequence[Any] = (),
    ) -> None:
        super().__init__(tasks=tasks, pipeline=pipeline)
        name = type(self).__name__
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int)
            or not (1 <= num_classes <= 255)
        ):
            raise ValueError(f"{name} num_classes must be an int in 1..255, got {num_classes!r}")
        if isinstance(depth_scale, bool) or not float(depth_scale) > 0:
            raise ValueError(
                f"{name} depth_scale must be > 0 (metres per unit), got {depth_scale!r}"
            )
        if image_size is not None and (
            len(image_size) != 2 or not all(int(v) >= 1 for v in image_size)
        ):
            raise ValueError(f"{name} image_size must be (H, W) >= 1 or None, got {image_size!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"{name}: {len(class_names)} class_names for num_classes={num_classes}"
            )
        self.root = Path(data_root)
        self.depth_scale = float(depth_scale)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        # Instance attributes: the metainfo of MultiTaskDataset reads them.
        self.num_classes = {"semseg": num_classes}
        names = class_names or [f"class {i}" for i in range(num_classes)]
        self.class_names = {"semseg": tuple(names)}
        rgb = self.root / self.FOLDERS["image"]
        if not rgb.is_dir():
            raise FileNotFoundError(
                f"{name} root {str(self.root)!r} has no {self.FOLDERS['image']}/ folder. "
                f"Expected layout:\n{LAYOUT}"
            )
        self.images: dict[str, Path] = {}
        for path in sorted(rgb.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            check_sample_id(path.stem, f"{name} image {str(path)!r}")
            if path.stem in self.images:
                raise ValueError(
                    f"{name}: {str(self.images[path.stem])!r} and {str(path)!r} share the id "
                    f"{path.stem!r}; keep one"
                )
            self.images[path.stem] = path
        if not self.images:
            raise FileNotFoundError(
                f"{name}: {str(rgb)!r} holds no {'/'.join(IMAGE_SUFFIXES)} image. Expected "
                f"layout:\n{LAYOUT}"
            )
        self.ids = list(self.images)

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, task: str, sample_id: str) -> Path:
        """Where ``task``'s file of ``sample_id`` lives (``image`` for the RGB image)."""
        if task == "image":
            return self.images[sample_id]
        return self.root / self.FOLDERS[task] / f"{sample_id}.png"

    def _existing(self, task: str, sample_id: str) -> Path:
        path = self.path(task, sample_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"{type(self).__name__} sample {sample_id!r}: the {task} pseudo label "
                f"{str(path)!r} is missing. Expected layout:\n{LAYOUT}"
            )
        return path

    def decode(self, task: str, path: Path) -> np.ndarray:
        """Depth as float32 metres (0 = none); semseg as uint8 ids (255 = unlabelled)."""
        raw = read_image_file(path, color=False)
        if task == "depth":
            if raw.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"{str(path)!r}: depth must be uint8 or uint16, got {raw.dtype}")
            return raw.astype(np.float32) * np.float32(self.depth_scale)
        if raw.dtype != np.uint8:
            raise ValueError(f"{str(path)!r}: semseg must be uint8 class ids, got {raw.dtype}")
        count = self.num_classes["semseg"]
        bad = (raw >= count) & (raw != 255)
        if bad.any():
            raise ValueError(
                f"{str(path)!r}: class id {int(raw[bad].max())} outside 0..{count - 1} "
                f"(num_classes={count}; 255 = unlabelled)"
            )
        return raw

    def _resize(self, sample: dict) -> dict:
        h, w = self.image_size
        image = sample["image"]
        if image.shape[:2] == (h, w):
            return sample
        shrink = image.shape[0] > h and image.shape[1] > w
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        sample["image"] = cv2.resize(image, (w, h), interpolation=interp)
        for task in self.tasks:
            sample[task] = cv2.resize(sample[task], (w, h), interpolation=cv2.INTER_NEAREST)
        return sample

    def load_sample(self, index: int) -> dict:
        """Read the image and the requested pseudo labels of sample ``index``."""
        sample_id = self.ids[index]
        paths = {t: self._existing(t, sample_id) for t in ("image", *self.tasks)}
        sample: dict = {"image": read_image_file(paths["image"], color=True)}
        for task in self.tasks:
            sample[task] = self.decode(task, paths[task])
        self.check_map_sizes(sample, sample_id)
        ori_shape = sample["image"].shape[:2]
        if self.image_size is not None:
            sample = self._resize(sample)
        sample["meta"] = dict(name=sample_id, ori_shape=sample["image"].shape[:2], index=index)
        if ori_shape != sample["image"].shape[:2]:
            sample["meta"]["file_shape"] = ori_shape
        return sample
