"""Augmentation invariants: alignment, flips, unit normals, depth scaling, no new label values."""

from __future__ import annotations

import numpy as np
import pytest

from vision_mtl.datasets import MultiTaskAugment, RandomHorizontalFlip, SynthScenesDataset


def _scene(size=(48, 64)):
    tasks = list(SynthScenesDataset.PROVIDES)
    return SynthScenesDataset(split="train", num_samples=4, tasks=tasks, image_size=size)


def _pattern(h=40, w=52):
    """Image and maps that all encode each pixel's own (row, col)."""
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([rows * 5, cols * 4, np.full_like(rows, 77)], -1).astype(np.uint8)
    normals = np.zeros((h, w, 3), np.float32)
    angle = cols / w * np.pi / 2
    normals[..., 0], normals[..., 2] = np.sin(angle), np.cos(angle)
    return dict(
        image=image,
        semseg=(rows % 6).astype(np.uint8),
        human_parts=(cols % 4).astype(np.uint8),
        depth=(1.0 + rows / 10).astype(np.float32),
        normals=normals,
        meta=dict(name="pattern"),
    )


@pytest.mark.parametrize("seed", range(6))
def test_image_and_every_map_stay_aligned(seed):
    aug = MultiTaskAugment((32, 40), scale_range=(1.0, 1.0), photometric=False, seed=seed)
    before = _pattern()
    out = aug({k: (v.copy() if isinstance(v, np.ndarray) else dict(v)) for k, v in before.items()})
    flipped = out["normals"][..., 0] < 0
    assert flipped.all() or not flipped.any()  # one flip decision for every pixel
    rows = out["image"][..., 0].astype(int) // 5
    cols = out["image"][..., 1].astype(int) // 4
    np.testing.assert_array_equal(out["semseg"], rows % 6)
    np.testing.assert_array_equal(out["human_parts"], cols % 4)
    np.testing.assert_allclose(out["depth"], 1.0 + rows / 10, rtol=1e-6)
    expected_x = np.sin(cols / 52 * np.pi / 2) * (-1 if flipped.any() else 1)
    np.testing.assert_allclose(out["normals"][..., 0], expected_x, atol=1e-6)


@pytest.mark.parametrize("factor", [0.5, 1.5, 2.0])
def test_depth_scales_inversely_and_normals_stay_unit(factor):
    sample = _scene().load_sample(0)
    aug = MultiTaskAugment((48, 64), scale_range=(factor, factor), photometric=False, seed=1)
    out = aug.scale(dict(sample), factor)
    assert out["image"].shape[:2] == (round(48 * factor), round(64 * factor))
    assert out["depth"].shape == out["image"].shape[:2] == out["semseg"].shape
    # nearest resampling: every output depth is an input depth divided by the factor
    source = set(np.round(sample["depth"].ravel() / factor, 4))
    assert set(np.round(out["depth"].ravel(), 4)) <= source
    assert out["depth"].mean() == pytest.approx(sample["depth"].mean() / factor, rel=0.05)
    norms = np.linalg.norm(out["normals"], axis=-1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_full_pipeline_keeps_labels_units_and_canvas(seed):
    sample = _scene().load_sample(seed % 4)
    values = {t: set(np.unique(sample[t])) | {255} for t in ("semseg", "human_parts", "edge")}
    out = MultiTaskAugment((40, 56), seed=seed)(sample)
    for task, allowed in values.items():
        assert set(np.unique(out[task])) <= allowed, task
    assert out["image"].shape == (40, 56, 3) and out["normals"].shape == (40, 56, 3)
    norms = np.linalg.norm(out["normals"], axis=-1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
    padded = out["semseg"] == 255
    assert (out["depth"][padded] == 0).all()  # padding is invalid in every map


def test_two_flips_are_the_identity():
    sample = _scene().load_sample(1)
    flip = RandomHorizontalFlip(prob=1.0)
    twice = flip(
        flip({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sample.items()})
    )
    for key in ("image", "semseg", "depth", "normals", "edge", "saliency", "human_parts"):
        np.testing.assert_array_equal(twice[key], sample[key], err_msg=key)


def test_crop_avoids_a_dominant_class_when_it_can():
    sample = _pattern(60, 60)
    sample["semseg"][:] = 3
    sample["semseg"][:, 50:] = 1  # only crops reaching the right edge hold two classes
    aug = MultiTaskAugment((30, 30), scale_range=(1.0, 1.0), cat_max_ratio=0.75, crop_tries=200,
                           photometric=False, flip_prob=0.0, seed=0)  # fmt: skip
    out = aug(sample)
    counts = np.bincount(out["semseg"].ravel())
    assert counts.max() / counts.sum() < 0.75


def test_bad_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        MultiTaskAugment((0, 5))
    with pytest.raises(ValueError, match="scale_range"):
        MultiTaskAugment((5, 5), scale_range=(2.0, 1.0))
