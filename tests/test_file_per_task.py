"""A new dataset stored one file per task per sample is a short FilePerTaskDataset subclass."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vision_mtl.datasets import FilePerTaskDataset


class RoomScans(FilePerTaskDataset):
    """An invented archive: rgb/<id>.jpg, labels/<id>.png (ids 1..5, 0 = void), range/<id>.npy."""

    PROVIDES = ("semseg", "depth")
    TASK_SETS = {"all": PROVIDES}
    num_classes = {"semseg": 5}
    FILES = {"semseg": ("labels", ".png"), "depth": ("range", ".npy")}
    IMAGE = ("rgb", ".png")
    SPLIT_FILE = "splits/{split}.lst"
    LAYOUT = "rgb/<id>.png labels/<id>.png range/<id>.npy splits/{train,val}.lst"

    def read_image(self, path: Path) -> np.ndarray:
        return cv2.imread(str(path))[..., ::-1]

    def decode(self, task: str, path: Path) -> np.ndarray:
        if task == "semseg":
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int64)
            return np.where(raw == 0, 255, raw - 1).astype(np.uint8)
        return np.load(path)


@pytest.fixture
def root(tmp_path):
    for sample_id in ("a", "b"):
        for folder in ("rgb", "labels", "range"):
            (tmp_path / folder).mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "rgb" / f"{sample_id}.png"), np.full((4, 6, 3), 9, np.uint8))
        labels = np.zeros((4, 6), np.uint8)
        labels[0, 0] = 3
        cv2.imwrite(str(tmp_path / "labels" / f"{sample_id}.png"), labels)
        np.save(tmp_path / "range" / f"{sample_id}.npy", np.full((4, 6), 2.0, np.float32))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.lst").write_text("a\nb\n")
    return tmp_path


def test_a_short_subclass_loads_samples(root):
    data = RoomScans(str(root), tasks=["semseg", "depth"])
    sample = data[1]
    assert len(data) == 2 and sample["meta"]["name"] == "b"
    assert sample["semseg"][0, 0] == 2 and sample["semseg"][1, 1] == 255
    assert sample["depth"].dtype == np.float32 and sample["image"].shape == (4, 6, 3)
    assert data.metainfo["num_classes"] == {"semseg": 5}


def test_the_base_names_what_is_wrong(root):
    with pytest.raises(FileNotFoundError, match=r"splits/val.lst"):
        RoomScans(str(root), split="val")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val'\], got 'test'"):
        RoomScans(str(root), split="test")
    (root / "range" / "b.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"RoomScans sample 'b': .*range/b.npy.*'depth'"):
        RoomScans(str(root))[1]
    np.save(root / "range" / "b.npy", np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match=r"sample 'b': depth map is \(5, 6\)"):
        RoomScans(str(root))[1]
