"""Flip keeps maps aligned, packing/collate shapes, trivial predictors, prediction pictures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vision_mtl.datasets import (
    PackMultiTaskInputs,
    RandomHorizontalFlip,
    SynthScenesDataset,
    multitask_collate,
)
from vision_mtl.evaluation import MultiTaskMetric
from vision_mtl.evaluation.trivial import evaluate_trivial, fit_trivial, trivial_prediction
from vision_mtl.visualization import make_grid, save_grid


def _sample():
    return SynthScenesDataset(split="train", num_samples=2, image_size=(24, 32)).load_sample(0)


def test_flip_mirrors_every_map_and_negates_normal_x():
    sample = _sample()
    original = {k: np.array(v) for k, v in sample.items() if k != "meta"}
    flipped = RandomHorizontalFlip(prob=1.0)(sample)
    np.testing.assert_array_equal(flipped["image"], original["image"][:, ::-1])
    np.testing.assert_array_equal(flipped["semseg"], original["semseg"][:, ::-1])
    np.testing.assert_array_equal(flipped["normals"][..., 0], -original["normals"][:, ::-1, 0])
    np.testing.assert_array_equal(flipped["normals"][..., 1:], original["normals"][:, ::-1, 1:])
    assert flipped["meta"]["flipped"]
    with pytest.raises(ValueError, match="prob"):
        RandomHorizontalFlip(prob=2)


def test_pack_and_collate():
    packed = PackMultiTaskInputs()(_sample())
    assert packed["inputs"].shape == (3, 24, 32) and packed["inputs"].dtype == torch.uint8
    assert packed["targets"]["semseg"].dtype == torch.int64
    assert packed["targets"]["depth"].shape == (1, 24, 32)
    assert packed["targets"]["normals"].shape == (3, 24, 32)
    batch = multitask_collate([packed, packed])
    assert len(batch["inputs"]) == 2 and batch["meta"][1]["ori_shape"] == (24, 32)
    other = dict(packed, targets={"semseg": packed["targets"]["semseg"]})
    with pytest.raises(ValueError, match="different tasks"):
        multitask_collate([packed, other])
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        PackMultiTaskInputs()(dict(image=np.zeros((4, 4), np.uint8)))


def test_trivial_predictors_are_fitted_and_scored():
    train = SynthScenesDataset(split="train", num_samples=6, image_size=(24, 32))
    stats = fit_trivial(train, train.tasks, num_samples=6)
    counts = np.bincount(np.concatenate([train.load_sample(i)["semseg"].ravel() for i in range(6)]))
    assert stats["semseg"] == int(np.argmax(counts))
    assert 0.5 < float(np.asarray(stats["depth"]).ravel()[0]) < 20
    assert np.linalg.norm(stats["normals"]) == pytest.approx(1.0)
    assert trivial_prediction("normals", stats["normals"], (2, 3)).shape == (3, 2, 3)
    val = SynthScenesDataset(
        split="val", num_samples=4, image_size=(24, 32), pipeline=[dict(type="PackMultiTaskInputs")]
    )
    loader = torch.utils.data.DataLoader(val, batch_size=2, collate_fn=multitask_collate)
    metric = MultiTaskMetric(tasks=train.tasks)
    metric.dataset_meta = val.metainfo
    result = evaluate_trivial(stats, loader, metric)
    assert result["edge/odsF"] == 0.0 and 0 < result["semseg/mIoU"] < 100
    assert result["normals/mean"] > 5


def test_grid_has_gt_and_prediction_rows(tmp_path):
    sample = _sample()
    pred = {
        "semseg": torch.as_tensor(sample["semseg"]).long(),
        "depth": torch.as_tensor(sample["depth"]),
        "normals": torch.as_tensor(sample["normals"]).permute(2, 0, 1),
    }
    grid = make_grid(sample["image"], pred, pred, {"semseg": 7})
    assert grid.shape[1] == 4 * 32 * 8 and grid.shape[0] > 2 * 24 * 8  # enlarged to 192 px
    save_grid(grid, tmp_path / "g.png")
    assert cv2.imread(str(tmp_path / "g.png")).shape == grid.shape
