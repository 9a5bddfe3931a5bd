"""SynthScenes as a :class:`MultiTaskDataset`: rendered on the fly, deterministic, exact labels.

Sample ``index`` of a split is :func:`render_scene` seeded with the key ``(seed, split id,
index)``: the same in every process and epoch, and no files (bit for bit with the same numpy
build and CPU; another build may round a few boundary pixels differently).

The split is part of the key rather than an offset added to ``seed``, because offsets collide
(train with ``seed = 1_000_003`` would be val with ``seed = 0``). Keys of different splits differ
for every ``seed``, and numpy's ``SeedSequence`` reads each as exactly three 32-bit words, so two
scenes could only coincide through a collision of its 128-bit hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vision_mtl.datasets.base import MultiTaskDataset
from vision_mtl.datasets.synthscenes_render import (
    DEFAULT_CAMERA_HEIGHT,
    DEFAULT_FOV_Y,
    PART_CLASSES,
    SEMSEG_CLASSES,
    render_scene,
)
from vision_mtl.registry import DATASETS

#: Split name -> the middle element of the seed key.
SPLIT_IDS = {"train": 0, "val": 1}
_MAX_KEY = 2**32  # SeedSequence splits larger ints into 32-bit words, which could alias keys


def sample_key(seed: int, split: str, index: int) -> tuple[int, int, int]:
    """The ``numpy.random.default_rng`` seed of sample ``index`` of ``split``.

    Each element stays below 2**32 so numpy reads the key as exactly three 32-bit words: two
    different keys can then never be the same entropy.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
    for name, value in (("seed", seed), ("index", index)):
        if not 0 <= value < _MAX_KEY:
            raise ValueError(f"{name} must be in [0, 2**32), got {value!r}")
    return (int(seed), SPLIT_IDS[split], int(index))


def _check_range(name: str, value, low: float, high: float):
    """A number or an ordered (low, high) pair inside [low, high], else a ValueError naming it."""
    values = [value] if np.isscalar(value) else list(value)
    ok = len(values) in (1, 2) and all(
        isinstance(v, (int, float, np.number)) and low <= float(v) <= high for v in values
    )
    if not ok or (len(values) == 2 and values[0] > values[1]):
        raise ValueError(
            f"{name} must be a number or a (low, high) range within [{low}, {high}], got {value!r}"
        )
    return float(values[0]) if len(values) == 1 else (float(values[0]), float(values[1]))


@DATASETS.register_module()
class SynthScenesDataset(MultiTaskDataset):
    """Procedural indoor scenes (room + primitives on the floor) with six exact dense tasks.

    ``TASK_SETS`` mimic the task lists of NYUD-v2 and PASCAL-Context so configs written for those
    run unchanged on synthetic data. See :mod:`vision_mtl.datasets.synthscenes_render` for the
    scene model and label conventions.

    Args:
        split: ``'train'`` or ``'val'``; the two never share a scene.
        num_samples: length of the dataset (scenes ``0 .. num_samples - 1``).
        tasks: task names or a key of :attr:`TASK_SETS`.
        image_size: ``(H, W)`` of images and labels, each at least 16.
        seed: base seed, a non-negative integer below 2**32; a different seed is a different
            data set.
        cache: keep each rendered sample in memory (per process: every DataLoader worker has
            its own cache), trading memory (~0.2 MB a sample at 96×128) for the ~7 ms a render
            costs there.
        pipeline: transforms applied to each sample.
        fov_y: vertical field of view in degrees (fixed by default, like a real sensor), or a
            ``(low, high)`` range to draw per scene.
        camera_height: camera height in metres, or a ``(low, high)`` range to draw per scene.
    """

    PROVIDES = ("semseg", "depth", "normals", "edge", "saliency", "human_parts")
    TASK_SETS = {
        "nyud": ("semseg", "depth", "normals", "edge"),
        "pascal": ("semseg", "human_parts", "saliency", "normals", "edge"),
    }
    num_classes = {"semseg": len(SEMSEG_CLASSES), "human_parts": len(PART_CLASSES)}
    class_names = {"semseg": SEMSEG_CLASSES, "human_parts": PART_CLASSES}

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 1000,
        tasks: str | Sequence[str] = "nyud",
        image_size: Sequence[int] = (96, 128),
        seed: int = 0,
        cache: bool = False,
        pipeline: Sequence[Any] = (),
        fov_y: float | Sequence[float] = DEFAULT_FOV_Y,
        camera_height: float | Sequence[float] = DEFAULT_CAMERA_HEIGHT,
    ) -> None:
        super().__init__(tasks=tasks, pipeline=pipeline)
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if not 1 <= num_samples <= _MAX_KEY:
            raise ValueError(f"num_samples must be in [1, 2**32], got {num_samples!r}")
        size = tuple(image_size) if isinstance(image_size, (list, tuple)) else None
        if (
            size is None
            or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
            or min(size) < 16
        ):
            raise ValueError(f"image_size must be two integers (H, W) >= 16, got {image_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        if not 0 <= seed < _MAX_KEY:
            raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
        self.split = split
        self.num_samples = int(num_samples)
        self.image_size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.cache = bool(cache)
        self.camera = dict(
            fov_y=_check_range("fov_y", fov_y, 1.0, 170.0),
            camera_height=_check_range("camera_height", camera_height, 0.1, 2.4),
        )
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return self.num_samples

    def load_sample(self, index: int) -> dict:
        """Render (or fetch from the cache) scene ``index``: image, the requested tasks, meta."""
        index = int(index)
        raw = self._cache.get(index)
        if raw is None:
            key = sample_key(self.seed, self.split, index)
            scene = render_scene(key, self.image_size, **self.camera)
            raw = {key: scene[key] for key in ("image", *self.tasks)}
            if self.cache:
                self._cache[index] = raw
        # Copies, so that transforms working in place can never alter the cached arrays.
        sample = {key: value.copy() for key, value in raw.items()}
        sample["meta"] = dict(
            name=f"synthscenes_{self.split}_{index:06d}", ori_shape=self.image_size, index=index
        )
        return sample

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, num_samples={self.num_samples}, "
            f"tasks={self.tasks}, image_size={self.image_size}, seed={self.seed})"
        )
