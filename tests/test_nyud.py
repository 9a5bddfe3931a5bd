"""NYUD-v2 loader against fixtures written at test time in the archive's exact layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_tool

from vision_mtl.datasets import NYUDv2Dataset, SynthScenesDataset

H, W = 5, 6


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array[..., ::-1] if array.ndim == 3 else array)


@pytest.fixture
def nyud_root(tmp_path):
    """Two train ids and one val id with known pixels, written file by file."""
    root = tmp_path / "NYUDv2"
    for sample_id in ("0001", "0002", "0003"):
        image = np.full((H, W, 3), 10, np.uint8)
        image[0, 0] = (255, 0, 0)  # red marks the top-left corner
        _png(root / "images" / f"{sample_id}.png", image)
        seg = np.zeros((H, W), np.uint8)
        seg[0, 1], seg[0, 2], seg[1, 0] = 1, 40, 17
        _png(root / "segmentation" / f"{sample_id}.png", seg)
        depth = np.zeros((H, W), np.float32)
        depth[2, 3] = 2.5
        (root / "depth").mkdir(parents=True, exist_ok=True)
        np.save(root / "depth" / f"{sample_id}.npy", depth)
        normals = np.full((H, W, 3), 127, np.uint8)  # decodes to ~0: invalid
        normals[1, 1] = (255, 128, 128)  # ~(1, 0, 0)
        normals[1, 2] = (128, 128, 0)  # ~(0, 0, -1)
        _png(root / "normals" / f"{sample_id}.png", normals)
        edge = np.zeros((H, W), np.uint8)
        edge[4, :] = 255
        _png(root / "edge" / f"{sample_id}.png", edge)
    (root / "gt_sets").mkdir()
    (root / "gt_sets" / "train.txt").write_text("0001\n0002\n")
    (root / "gt_sets" / "val.txt").write_text("0003\n")
    return root


def test_decoding_of_every_task(nyud_root):
    data = NYUDv2Dataset(str(nyud_root), split="train")
    assert len(data) == 2 and NYUDv2Dataset(str(nyud_root), split="val").ids == ["0003"]
    s = data.load_sample(1)
    assert s["meta"]["name"] == "0002" and s["meta"]["ori_shape"] == (H, W)
    assert tuple(s["image"][0, 0]) == (255, 0, 0)  # RGB order kept
    assert s["semseg"][0, 0] == 255 and s["semseg"][0, 1] == 0  # void, class 1
    assert s["semseg"][0, 2] == 39 and s["semseg"][1, 0] == 16  # class 40, class 17
    assert s["depth"][2, 3] == pytest.approx(2.5) and s["depth"][0, 0] == 0
    np.testing.assert_allclose(s["normals"][1, 1], [1, 0, 0], atol=0.01)
    np.testing.assert_allclose(s["normals"][1, 2], [0, 0, -1], atol=0.01)
    np.testing.assert_allclose(np.linalg.norm(s["normals"][1, 1]), 1.0, atol=1e-6)
    assert (s["normals"][0, 0] == 0).all()  # (127,127,127) is no direction
    assert s["edge"][4].tolist() == [1] * W and s["edge"][:4].sum() == 0
    assert data.metainfo["num_classes"] == {"semseg": 40}


def test_subset_of_tasks_and_unprovided_task(nyud_root):
    s = NYUDv2Dataset(str(nyud_root), tasks=["depth"]).load_sample(0)
    assert set(s) == {"image", "depth", "meta"}
    with pytest.raises(KeyError, match="'saliency'.*NYUDv2Dataset"):
        NYUDv2Dataset(str(nyud_root), tasks=["semseg", "saliency"])


def test_missing_root_split_and_file_name_the_path(nyud_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*gt_sets/train.txt.*ATRC"):
        NYUDv2Dataset(str(tmp_path / "nowhere"))
    (nyud_root / "gt_sets" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"gt_sets/val.txt"):
        NYUDv2Dataset(str(nyud_root), split="val")
    (nyud_root / "depth" / "0002.npy").unlink()
    data = NYUDv2Dataset(str(nyud_root))
    data.load_sample(0)
    with pytest.raises(FileNotFoundError, match=r"'0002'.*depth/0002.npy"):
        data.load_sample(1)


def test_bad_label_and_size_mismatch_name_the_sample(nyud_root):
    seg = np.full((H, W), 41, np.uint8)
    _png(nyud_root / "segmentation" / "0001.png", seg)
    with pytest.raises(ValueError, match=r"segmentation/0001.png.*41"):
        NYUDv2Dataset(str(nyud_root)).load_sample(0)
    _png(nyud_root / "edge" / "0002.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(ValueError, match=r"'0002': edge map is \(6, 6\)"):
        NYUDv2Dataset(str(nyud_root)).load_sample(1)


def test_infinite_depth_names_the_file_and_nan_means_no_reading(nyud_root):
    depth = np.zeros((H, W), np.float32)
    depth[0, 0], depth[1, 1] = np.nan, 3.0
    np.save(nyud_root / "depth" / "0001.npy", depth)
    loaded = NYUDv2Dataset(str(nyud_root), tasks=["depth"]).load_sample(0)["depth"]
    assert loaded[0, 0] == 0.0 and loaded[1, 1] == 3.0
    depth[2, 2] = -np.inf
    np.save(nyud_root / "depth" / "0001.npy", depth)
    with pytest.raises(ValueError, match=r"depth/0001.npy'.*1 infinite or negative.*-inf"):
        NYUDv2Dataset(str(nyud_root), tasks=["depth"]).load_sample(0)


@pytest.mark.parametrize("bad_id", ["/tmp/elsewhere", "../../outside", "a/../../b", "C:\\x"])
def test_split_ids_that_could_leave_an_output_dir_are_refused(nyud_root, bad_id):
    (nyud_root / "gt_sets" / "val.txt").write_text(f"0003\n{bad_id}\n")
    with pytest.raises(ValueError, match=r"gt_sets/val.txt', id 2: sample id .* not a relative"):
        NYUDv2Dataset(str(nyud_root), split="val")


def test_synthscenes_round_trip_through_the_layout(tmp_path):
    root = tmp_path / "synth_nyud"
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "nyud",
            "--out",
            str(root),
            "--num",
            "3",
            "--val-num",
            "2",
            "--size",
            "24",
            "32",
        ]
    )
    loaded = NYUDv2Dataset(str(root), split="val")
    source = SynthScenesDataset(split="val", num_samples=2, image_size=(24, 32))
    assert loaded.ids == ["synthscenes_val_000000", "synthscenes_val_000001"]
    for index in range(2):
        got, want = loaded.load_sample(index), source.load_sample(index)
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["semseg"], want["semseg"])
        np.testing.assert_array_equal(got["depth"], want["depth"])
        np.testing.assert_array_equal(got["edge"], want["edge"])
        np.testing.assert_allclose(got["normals"], want["normals"], atol=2 / 255)
    assert not list(root.rglob("*.tmp"))
