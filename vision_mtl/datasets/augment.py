"""The multitask papers' training augmentation, with one geometry for the image and every map.

Order (REFERENCE.md §1, "Augmentation used by the anchors"): random scale 0.5–2 (image bilinear,
every map nearest, depth divided by the scale so it stays metric for the rescaled view), padding
to the crop size (image 0, label maps 255, float maps 0), a random crop that retries (up to 10
times) while one class covers more than 75 % of the labelled pixels, a horizontal flip that
negates the normals' x, and photometric distortion of the image only. Last, a human-parts crop
holding only background is ignored whole, as InvPT's ``AddIgnoreRegions`` does after its crop.
Nearest resampling never invents label values and keeps normals unit length.

Scaling and the photometric distortion are albumentations transforms; the crop rule and the
per-task fill values are the parts albumentations does not express, so they are done here.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np

from vision_mtl.datasets.transforms import RandomHorizontalFlip, ignore_background_only
from vision_mtl.registry import TRANSFORMS
from vision_mtl.tasks import TASKS, get_task


def _tasks_in(sample: dict) -> list[str]:
    return [k for k in sample if k in TASKS]


def pad_sample(sample: dict, size: tuple[int, int]) -> dict:
    """Pad image and maps at the bottom/right to at least ``size`` with each one's fill value."""
    h, w = sample["image"].shape[:2]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return sample
    for key in ["image", *_tasks_in(sample)]:
        value = sample[key]
        fill = 0 if key == "image" else get_task(key).ignore_value
        spec = ((0, ph), (0, pw)) + ((0, 0),) * (value.ndim - 2)
        sample[key] = np.pad(value, spec, constant_values=fill)
    return sample


@TRANSFORMS.register_module()
class MultiTaskAugment:
    """Scale, pad, crop, flip and photometric distortion for a multitask sample.

    Args:
        crop_size: ``(H, W)`` of the training crop (the canvas).
        scale_range: range of the random scale factor.
        cat_max_ratio: a crop is retried while one class covers more of its labelled ``semseg``
            pixels than this (1.0 disables the rule).
        crop_tries: how many crops to try before keeping the last.
        flip_prob: probability of a horizontal flip.
        photometric: apply brightness (±32), contrast and saturation (0.5–1.5) and hue (±18 of
            OpenCV's 180) distortion to the image.
        seed: seed of the transform's own generator (``None``: numpy's global state, which
            mmengine seeds per worker).
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        scale_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        crop_tries: int = 10,
        flip_prob: float = 0.5,
        photometric: bool = True,
        seed: int | None = None,
    ) -> None:
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"MultiTaskAugment crop_size must be (H, W) >= 1, got {crop_size!r}")
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(
                f"MultiTaskAugment scale_range must be 0 < low <= high, got {scale_range!r}"
            )
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.crop_tries = crop_tries
        self.rng = np.random.default_rng(seed) if seed is not None else None
        self.flip_prob = flip_prob
        self.flip = RandomHorizontalFlip(prob=1.0)
        self.scale_range = (low, high)
        self.photometric = (
            A.Compose(
                [
                    A.RandomBrightnessContrast(
                        brightness_limit=32 / 255, contrast_limit=0.5, brightness_by_max=True, p=1
                    ),
                    A.ColorJitter(brightness=0, contrast=0, saturation=(0.5, 1.5), hue=0.1, p=1),
                ],
                seed=None if seed is None else seed + 2,
            )
            if photometric
            else None
        )

    def scale(self, sample: dict, factor: float) -> dict:
        """Resize by ``factor``: image bilinear, every map nearest, and maps whose values depend on
        the image scale (TaskSpec ``scale_exponent``) multiplied by ``factor ** exponent``."""
        if factor == 1.0:
            return sample
        tasks = _tasks_in(sample)
        resize = A.Compose(
            [A.RandomScale(scale_limit=(factor - 1.0, factor - 1.0), p=1)],
            additional_targets={t: "mask" for t in tasks},
        )
        out = resize(image=sample["image"], **{t: sample[t] for t in tasks})
        sample["image"] = out["image"]
        for task in tasks:
            exponent = get_task(task).scale_exponent  # depth: a view `factor` times closer
            sample[task] = out[task] * np.float32(factor**exponent) if exponent else out[task]
        return sample

    def crop(self, sample: dict, rng: np.random.Generator) -> dict:
        """A random crop of ``crop_size``, retried while one semseg class dominates it."""
        h, w = sample["image"].shape[:2]
        ch, cw = self.crop_size
        labels = sample.get("semseg")
        for _ in range(max(self.crop_tries, 1)):
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            if labels is None or self.cat_max_ratio >= 1.0:
                break
            window = labels[top : top + ch, left : left + cw]
            labelled = window[window != get_task("semseg").ignore_value]
            counts = np.bincount(labelled.ravel().astype(np.int64))
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        for key in ["image", *_tasks_in(sample)]:
            sample[key] = np.ascontiguousarray(sample[key][top : top + ch, left : left + cw])
        return sample

    def __call__(self, sample: dict) -> dict:
        # Unseeded, draw from numpy's global state, which mmengine seeds per dataloader worker.
        rng = self.rng or np.random.default_rng(np.random.randint(2**31))
        factor = float(rng.uniform(*self.scale_range))
        sample = self.scale(sample, factor)
        sample = pad_sample(sample, self.crop_size)
        sample = self.crop(sample, rng)
        if rng.random() < self.flip_prob:
            sample = self.flip(sample)
        if self.photometric is not None:
            sample["image"] = self.photometric(image=sample["image"])["image"]
        sample = ignore_background_only(sample)
        sample.setdefault("meta", {})["scale"] = factor
        return sample
