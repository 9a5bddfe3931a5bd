"""PASCAL-Context in the multitask layout ("PASCAL_MT") of the published multitask code.

Expected tree (REFERENCE.md §1)::

    PASCALContext/
      JPEGImages/<id>.jpg
      semseg/VOC12/<id>.png  (if present, else semseg/pascal-context/<id>.png)   21 classes
      human_parts/<id>.mat                 PASCAL-Part 'anno' struct
      normals_distill/<id>.png             pseudo-labels, 2 v / 255 - 1
      sal_distill/<id>.png                 pseudo-labels, / 255 > 0.5
      pascal-context/trainval/<id>.mat     'LabelMap' (459-class Context map)
      ImageSets/Context/train.txt, val.txt

This is the 21-class multitask protocol, not the 59-class PASCAL-Context benchmark. The protocol's
data (class names, the .mat struct, the part-name mapping, the Context ids on which distilled
normals are kept) ship with the package in ``vision_mtl/data/pascal_context_mt.json``.

* human_parts: person (category 15) parts mapped to 6 classes + background; an image with no
  person parts (a map holding only background) is ignored, all 255, as the published code does:
  InvPT's ``AddIgnoreRegions`` in its train and test transforms, and MTL-PyTorch's parts
  evaluation skips such images (``no_parts_value=0`` scores them as all background instead).
* normals: kept only on Context classes that exist in NYU (plus tvmonitor), zero elsewhere.
* edge: for training, ``thin(|Laplacian(LabelMap)| > 0)`` (scikit-image's thinning, as the
  published loaders), computed once per image and cached as PNG under ``edge_cache`` (written
  atomically); with ``edge_gt='seism'`` (the test configs), ``seg2bmap(LabelMap)``, the boundary
  SEISM scores against (``BoundaryMetric(gt_format='boundary')`` then thins it as SEISM does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from vision_mtl.datasets.base import MultiTaskDataset, read_id_list
from vision_mtl.datasets.nyud import decode_normals, read_image_file
from vision_mtl.registry import DATASETS
from vision_mtl.utils import atomic_write_bytes

LAYOUT = """PASCALContext/
  JPEGImages/<id>.jpg  semseg/VOC12/<id>.png | semseg/pascal-context/<id>.png
  human_parts/<id>.mat  normals_distill/<id>.png  sal_distill/<id>.png
  pascal-context/trainval/<id>.mat  ImageSets/Context/{train,val}.txt"""
WHERE = (
    "Get the PASCAL_MT archive distributed with the MTL-PyTorch / InvPT code (PASCAL_MT.tgz) and "
    "unpack it; see docs/datasets.md."
)


@lru_cache(maxsize=1)
def protocol() -> dict:
    """The protocol data shipped with the package (class names, part mapping, normal classes)."""
    text = resources.files("vision_mtl").joinpath("data/pascal_context_mt.json").read_text()
    return json.loads(text)


def read_label_png(path: Path) -> np.ndarray:
    """A label PNG as stored indices (palette PNGs are not expanded to colours)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I", "I;16"):
                raise ValueError(
                    f"{str(path)!r}: expected a palette or grey label PNG, got {image.mode}"
                )
            return np.array(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot read {str(path)!r}") from None


def load_mat(path: Path) -> dict:
    """scipy's loadmat with an error naming the file."""
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read MATLAB file {str(path)!r}: {err}") from None


def decode_human_parts(anno: dict, shape: tuple[int, int], no_parts_value: int) -> np.ndarray:
    """PASCAL-Part 'anno' struct -> 7-class part map (0 background, 1..6 parts)."""
    info = protocol()["human_parts"]
    mapping, person = info["part_name_to_class_6"], info["person_category"]
    parts = np.zeros(shape, np.uint8)
    for obj in anno["anno"][0][0][1][0]:
        if int(obj[1][0][0]) != person or obj[3].size == 0:
            continue
        for part in obj[3][0]:
            name = str(part[0][0])
            if name not in mapping:
                raise ValueError(f"unknown PASCAL-Part person part {name!r}")
            mask = np.asarray(part[1]) > 0
            if mask.shape != shape:
                raise ValueError(f"part mask {mask.shape} does not match the image {shape}")
            parts[mask] = mapping[name]
    if not parts.any():  # only background: no person, or persons without part masks
        parts[:] = no_parts_value
    return parts


def seism_edges(label_map: np.ndarray) -> np.ndarray:
    """The boundary SEISM scores PASCAL-Context against: ``seg2bmap`` of the Context label map."""
    from vision_mtl.evaluation.boundary_ops import seg2bmap

    return seg2bmap(label_map).astype(np.uint8)


def edges_from_label_map(label_map: np.ndarray) -> np.ndarray:
    """Thin boundaries where the Context label map changes: thin(|Laplacian| > 0)."""
    from skimage.morphology import thin

    laplacian = cv2.Laplacian(label_map.astype(np.float64), cv2.CV_64F)
    return thin(np.abs(laplacian) > 0).astype(np.uint8)


@DATASETS.register_module()
class PascalContextMTDataset(MultiTaskDataset):
    """PASCAL-Context multitask: semseg (21), human_parts (7), saliency, normals, edge.

    Args:
        data_root: the unpacked ``PASCALContext`` folder.
        split: ``train`` or ``val`` (``ImageSets/Context/<split>.txt``).
        tasks: any of :attr:`PROVIDES`, or ``"all"``.
        pipeline: transforms applied to each sample.
        no_parts_value: part label of images without person parts: 255 (ignored, as published)
            or 0 (all background).
        edge_gt: ``'train'`` (the published loaders' thinned Laplacian edges) or ``'seism'``
            (``seg2bmap`` of the label map, what the published boundary numbers are scored on).
        edge_cache: folder for the computed training edge maps (default
            ``<data_root>/edge_cache``).
    """

    PROVIDES = ("semseg", "human_parts", "saliency", "normals", "edge")
    TASK_SETS = {"all": PROVIDES}
    num_classes = {"semseg": 21, "human_parts": 7}
    class_names = {
        "semseg": tuple(protocol()["semseg_classes_21"]),
        "human_parts": tuple(protocol()["human_parts"]["class_names_7"]),
    }

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        tasks: str | Sequence[str] = "all",
        pipeline: Sequence[Any] = (),
        no_parts_value: int = 255,
        edge_gt: str = "train",
        edge_cache: str | None = None,
    ) -> None:
        super().__init__(tasks=tasks, pipeline=pipeline)
        if split not in ("train", "val"):
            raise ValueError(
                f"PascalContextMTDataset split must be 'train' or 'val', got {split!r}"
            )
        if no_parts_value not in (0, 255):
            raise ValueError(f"no_parts_value must be 0 or 255, got {no_parts_value!r}")
        if edge_gt not in ("train", "seism"):
            raise ValueError(f"edge_gt must be 'train' or 'seism', got {edge_gt!r}")
        self.root, self.split, self.no_parts_value = Path(data_root), split, no_parts_value
        self.edge_gt = edge_gt
        self.edge_cache = Path(edge_cache) if edge_cache else self.root / "edge_cache"
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"PASCAL-Context root {str(self.root)!r} does not exist. Expected layout:\n"
                f"{LAYOUT}\n{WHERE}"
            )
        self.ids = read_id_list(self.root / "ImageSets" / "Context" / f"{split}.txt", LAYOUT, WHERE)
        self.normal_ids = np.array(
            sorted(protocol()["normals_valid_context_classes"]["ids"].values())
        )

    def __len__(self) -> int:
        return len(self.ids)

    def _file(self, relative: str, sample_id: str, task: str) -> Path:
        path = self.root / relative.format(id=sample_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"PASCAL-Context sample {sample_id!r}: {str(path)!r} is missing (task {task!r}). "
                f"Expected layout:\n{LAYOUT}"
            )
        return path

    def _label_map(self, sample_id: str, task: str) -> np.ndarray:
        path = self._file("pascal-context/trainval/{id}.mat", sample_id, task)
        mat = load_mat(path)
        if "LabelMap" not in mat:
            raise ValueError(f"{str(path)!r} has no 'LabelMap' variable")
        return np.asarray(mat["LabelMap"])

    def _edge(self, sample_id: str) -> np.ndarray:
        if self.edge_gt == "seism":
            return seism_edges(self._label_map(sample_id, "edge"))
        cached = self.edge_cache / f"{sample_id}.png"
        if cached.is_file():
            return (read_image_file(cached, color=False) > 0).astype(np.uint8)
        edge = edges_from_label_map(self._label_map(sample_id, "edge"))
        ok, encoded = cv2.imencode(".png", edge * 255)
        if ok:
            atomic_write_bytes(encoded.tobytes(), cached)
        return edge

    def load_sample(self, index: int) -> dict:
        """Read and decode the image and every requested task of sample ``index``."""
        sample_id = self.ids[index]
        image = read_image_file(self._file("JPEGImages/{id}.jpg", sample_id, "image"), color=True)
        shape = image.shape[:2]
        sample: dict = {"image": image}
        if "semseg" in self.tasks:
            voc = self.root / "semseg" / "VOC12" / f"{sample_id}.png"
            path = (
                voc
                if voc.is_file()
                else self._file("semseg/pascal-context/{id}.png", sample_id, "semseg")
            )
            sample["semseg"] = read_label_png(path).astype(np.uint8)
        if "human_parts" in self.tasks:
            anno = load_mat(self._file("human_parts/{id}.mat", sample_id, "human_parts"))
            sample["human_parts"] = decode_human_parts(anno, shape, self.no_parts_value)
        if "saliency" in self.tasks:
            sal = read_image_file(
                self._file("sal_distill/{id}.png", sample_id, "saliency"), color=False
            )
            sample["saliency"] = (sal.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)
        if "normals" in self.tasks:
            rgb = read_image_file(
                self._file("normals_distill/{id}.png", sample_id, "normals"), color=True
            )
            keep = np.isin(self._label_map(sample_id, "normals"), self.normal_ids)
            sample["normals"] = decode_normals(rgb) * keep[..., None]
        if "edge" in self.tasks:
            sample["edge"] = self._edge(sample_id)
        self.check_map_sizes(sample, sample_id)
        sample["meta"] = dict(name=sample_id, ori_shape=shape, index=index)
        return sample
