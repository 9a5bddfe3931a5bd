"""Cityscapes loader against a fixture in the site's exact layout (uint16 disparity PNGs)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vision_mtl.datasets import CityscapesMTDataset

H, W = 4, 5


@pytest.fixture
def cs_root(tmp_path):
    root = tmp_path / "cityscapes"
    for stem in ("aachen_000000_000019", "aachen_000001_000019"):
        base = f"aachen/{stem}"
        for kind, name, array in [
            ("leftImg8bit", "_leftImg8bit.png", np.full((H, W, 3), 50, np.uint8)),
            ("gtFine", "_gtFine_labelIds.png", np.array([[0, 7, 10, 23, 26]] * H, np.uint8)),
            ("disparity", "_disparity.png", np.array([[0, 257, 25601, 1, 513]] * H, np.uint16)),
        ]:
            path = root / kind / "val" / f"{base}{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), array)
        camera = root / "camera" / "val" / f"{base}_camera.json"
        camera.parent.mkdir(parents=True, exist_ok=True)
        camera.write_text(json.dumps({"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 2000.0}}))
    return root


def test_label_ids_become_train_ids_from_the_official_table(cs_root):
    data = CityscapesMTDataset(str(cs_root), split="val")
    assert len(data) == 2 and data.metainfo["num_classes"] == {"semseg": 19}
    s = data.load_sample(0)
    # unlabeled -> 255, road -> 0, rail track -> 255 (not sky!), sky -> 10, car -> 13
    assert s["semseg"][0].tolist() == [255, 0, 255, 10, 13]
    assert data.class_names["semseg"][10] == "sky"
    assert s["meta"]["name"] == "aachen_aachen_000000_000019"


def test_disparity_conversion_and_metric_depth(cs_root):
    s = CityscapesMTDataset(str(cs_root), split="val", tasks=["disparity", "depth"]).load_sample(1)
    np.testing.assert_allclose(s["disparity"][0], [0.0, 1.0, 100.0, 0.0, 2.0])  # raw 0 invalid
    np.testing.assert_allclose(s["depth"][0], [0.0, 400.0, 4.0, 0.0, 200.0])  # 0.2 * 2000 / d


def test_errors_name_the_path(cs_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)nowhere.*leftImg8bit.*Cityscapes site"):
        CityscapesMTDataset(str(tmp_path / "nowhere"), split="val")
    with pytest.raises(FileNotFoundError, match="leftImg8bit/train"):
        CityscapesMTDataset(str(cs_root), split="train")
    next((cs_root / "disparity").rglob("*000001_000019_disparity.png")).unlink()
    data = CityscapesMTDataset(str(cs_root), split="val")
    data.load_sample(0)
    with pytest.raises(FileNotFoundError, match="'aachen/aachen_000001_000019'.*disparity"):
        data.load_sample(1)
    with pytest.raises(KeyError, match="'normals'.*CityscapesMTDataset"):
        CityscapesMTDataset(str(cs_root), split="val", tasks=["normals"])


def test_synthscenes_round_trip_through_the_cityscapes_layout(tmp_path):
    from conftest import load_tool

    from vision_mtl.datasets import SynthScenesDataset

    root = tmp_path / "synth_cs"
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "cityscapes",
            "--out",
            str(root),
            "--num",
            "1",
            "--val-num",
            "2",
            "--size",
            "24",
            "32",
        ]
    )
    loaded = CityscapesMTDataset(str(root), split="val", tasks=["semseg", "depth", "disparity"])
    source = SynthScenesDataset(
        split="val", num_samples=2, tasks=["semseg", "depth"], image_size=(24, 32)
    )
    assert len(loaded) == 2
    for index in range(2):
        got, want = loaded.load_sample(index), source.load_sample(index)
        np.testing.assert_array_equal(got["image"], want["image"])
        lookup = np.array([0, 2, 10, 13, 14, 15, 7])  # road, building, sky, car, truck, bus, sign
        np.testing.assert_array_equal(got["semseg"], lookup[want["semseg"]])
        np.testing.assert_allclose(got["depth"], want["depth"], rtol=0.02)  # 1/256 px quantization
        assert (got["disparity"] > 0).all()
