"""PASCAL-Context (multitask) loader against fixtures in the PASCAL_MT layout, .mat files included."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from vision_mtl.datasets import PascalContextMTDataset
from vision_mtl.datasets.pascal_context import edges_from_label_map

H, W = 8, 10


def _parts_struct(objects: list[tuple[int, np.ndarray, list[tuple[str, np.ndarray]]]]):
    """A PASCAL-Part 'anno' struct: objects of (category id, mask, [(part name, mask)])."""
    objs = np.empty(
        (1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    )
    for i, (category, mask, parts) in enumerate(objects):
        part_arr = np.empty((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
        for k, (name, pmask) in enumerate(parts):
            part_arr[0, k] = (name, pmask.astype(np.uint8))
        objs[0, i] = ("obj", np.array([[category]]), mask.astype(np.uint8),
                      part_arr if parts else np.empty((0, 0)))  # fmt: skip
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("img", objs)
    return {"anno": anno}


@pytest.fixture
def pascal_root(tmp_path):
    root = tmp_path / "PASCALContext"
    for d in ("JPEGImages", "semseg/VOC12", "semseg/pascal-context", "human_parts",
              "normals_distill", "sal_distill", "pascal-context/trainval", "ImageSets/Context"):  # fmt: skip
        (root / d).mkdir(parents=True)
    label_map = np.full((H, W), 440, np.uint16)  # wall: normals kept
    label_map[:, 6:] = 1  # id 1 (not an NYU class): normals dropped
    for sample_id in ("2008_000001", "2008_000002"):
        cv2.imwrite(str(root / "JPEGImages" / f"{sample_id}.jpg"), np.full((H, W, 3), 90, np.uint8))
        savemat(root / "pascal-context/trainval" / f"{sample_id}.mat", {"LabelMap": label_map})
        normals = np.full((H, W, 3), 128, np.uint8)
        normals[..., 2] = 255  # (0, 0, 1) as RGB
        cv2.imwrite(str(root / "normals_distill" / f"{sample_id}.png"), normals[..., ::-1])
        sal = np.zeros((H, W), np.uint8)
        sal[0, 0], sal[0, 1] = 200, 120  # 0.78 -> 1, 0.47 -> 0
        cv2.imwrite(str(root / "sal_distill" / f"{sample_id}.png"), sal)
    # semseg: 000001 has VOC12 (palette PNG, must be read as indices) and a decoy context map
    seg = np.zeros((H, W), np.uint8)
    seg[0, 0], seg[0, 1] = 15, 255
    voc = Image.fromarray(seg, mode="P")
    voc.putpalette([(i * 7) % 256 for i in range(768)])
    voc.save(root / "semseg/VOC12/2008_000001.png")
    Image.fromarray(np.full((H, W), 3, np.uint8)).save(
        root / "semseg/pascal-context/2008_000001.png"
    )
    Image.fromarray(np.full((H, W), 9, np.uint8)).save(
        root / "semseg/pascal-context/2008_000002.png"
    )
    # parts: a person with head + left lower leg, and a dog; the second image has no person parts
    person = np.zeros((H, W), bool)
    person[2:6, 2:5] = True
    head = np.zeros((H, W), bool)
    head[2, 2:5] = True
    lleg = np.zeros((H, W), bool)
    lleg[5, 2] = True
    dog = np.zeros((H, W), bool)
    dog[7, 7:] = True
    savemat(root / "human_parts/2008_000001.mat",
            _parts_struct([(15, person, [("head", head), ("llleg", lleg)]), (12, dog, [])]))  # fmt: skip
    savemat(root / "human_parts/2008_000002.mat", _parts_struct([(15, person, [])]))
    (root / "ImageSets/Context/train.txt").write_text("2008_000001\n2008_000002\n")
    (root / "ImageSets/Context/val.txt").write_text("2008_000002\n")
    return root


def test_every_task_decodes(pascal_root):
    data = PascalContextMTDataset(str(pascal_root), edge_cache=str(pascal_root.parent / "cache"))
    s = data.load_sample(0)
    assert (
        s["semseg"][0, 0] == 15 and s["semseg"][0, 1] == 255 and s["semseg"][1, 1] == 0
    )  # VOC12 first
    assert data.load_sample(1)["semseg"][0, 0] == 9  # no VOC12 file: pascal-context map
    assert s["human_parts"][2, 3] == 1 and s["human_parts"][5, 2] == 6  # head, lower leg
    assert s["human_parts"][3, 3] == 0 and s["human_parts"][7, 8] == 0  # unlabelled person, dog
    assert s["saliency"][0, 0] == 1 and s["saliency"][0, 1] == 0
    np.testing.assert_allclose(s["normals"][0, 0], [0, 0, 1], atol=0.01)  # wall: kept
    assert (s["normals"][:, 6:] == 0).all()  # a class NYU lacks: dropped
    assert s["edge"][:, 5:7].any() and not s["edge"][:, :4].any()  # where the LabelMap changes
    assert (pascal_root.parent / "cache" / "2008_000001.png").is_file()  # computed once, cached
    assert data.metainfo["num_classes"] == {"semseg": 21, "human_parts": 7}


def test_images_without_person_parts_are_ignored_by_default(pascal_root):
    """InvPT's AddIgnoreRegions: a parts map of background only is ignored whole (train and test)."""
    default = PascalContextMTDataset(str(pascal_root), split="val")
    assert (default.load_sample(0)["human_parts"] == 255).all()
    background = PascalContextMTDataset(str(pascal_root), split="val", no_parts_value=0)
    assert (background.load_sample(0)["human_parts"] == 0).all()
    # Images with a person keep their parts.
    train = PascalContextMTDataset(str(pascal_root), split="train")
    assert {0, 1, 6} <= set(np.unique(train.load_sample(0)["human_parts"]))


def test_training_crops_without_a_person_are_ignored():
    from vision_mtl.datasets.augment import MultiTaskAugment

    parts = np.zeros((40, 40), np.uint8)
    parts[30:, 30:] = 3  # a person only in the bottom-right corner
    sample = {"image": np.zeros((40, 40, 3), np.uint8), "human_parts": parts}
    augment = MultiTaskAugment(
        crop_size=(10, 10), scale_range=(1, 1), flip_prob=0, photometric=False, seed=0
    )
    seen = set()
    for _ in range(30):
        crop = augment({k: v.copy() for k, v in sample.items()})["human_parts"]
        seen.add("ignored" if (crop == 255).all() else "kept")
        assert (crop == 255).all() or (crop == 3).any()  # never a crop of background alone
    assert seen == {"ignored", "kept"}


def test_seism_edges_are_seg2bmap_of_the_label_map(pascal_root):
    seism = PascalContextMTDataset(str(pascal_root), split="val", edge_gt="seism", tasks=["edge"])
    edge = seism.load_sample(0)["edge"]
    label_map = seism._label_map(seism.ids[0], "edge")
    from vision_mtl.evaluation.boundary_ops import seg2bmap

    np.testing.assert_array_equal(edge, seg2bmap(label_map).astype(np.uint8))
    with pytest.raises(ValueError, match="edge_gt must be 'train' or 'seism'"):
        PascalContextMTDataset(str(pascal_root), edge_gt="laplacian")


def test_edges_are_thin_and_follow_label_changes():
    label_map = np.zeros((20, 20), np.int32)
    label_map[5:15, 5:15] = 7
    edge = edges_from_label_map(label_map)
    assert edge.sum() > 0 and edge[10, 10] == 0 and edge[0, 0] == 0
    blocks = edge[:-1, :-1] & edge[1:, :-1] & edge[:-1, 1:] & edge[1:, 1:]
    assert not blocks.any()  # thinned: no 2x2 block of boundary pixels


def test_missing_paths_are_named(pascal_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)nowhere.*ImageSets.*PASCAL_MT"):
        PascalContextMTDataset(str(tmp_path / "nowhere"))
    (pascal_root / "sal_distill/2008_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="'2008_000002'.*sal_distill/2008_000002.png"):
        PascalContextMTDataset(str(pascal_root), split="val").load_sample(0)
    with pytest.raises(KeyError, match="'depth'.*PascalContextMTDataset"):
        PascalContextMTDataset(str(pascal_root), tasks=["depth"])


def test_synthscenes_round_trip_through_the_pascal_layout(tmp_path):
    from conftest import load_tool

    from vision_mtl.datasets import SynthScenesDataset

    root = tmp_path / "synth_pascal"
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "pascal",
            "--out",
            str(root),
            "--num",
            "2",
            "--val-num",
            "2",
            "--size",
            "24",
            "32",
        ]
    )
    loaded = PascalContextMTDataset(str(root), split="val")
    source = SynthScenesDataset(split="val", num_samples=2, tasks="pascal", image_size=(24, 32))
    for index in range(2):
        got, want = loaded.load_sample(index), source.load_sample(index)
        for task in ("semseg", "human_parts", "saliency"):
            np.testing.assert_array_equal(got[task], want[task], err_msg=task)
        np.testing.assert_allclose(got["normals"], want["normals"], atol=2 / 255)
        # JPEG (4:2:0, noisy textures): the same picture, not the same bytes
        np.testing.assert_allclose(got["image"].mean((0, 1)), want["image"].mean((0, 1)), atol=3)
        assert np.abs(got["image"].astype(int) - want["image"]).mean() < 16
        assert got["edge"].any() and set(np.unique(got["edge"])) <= {0, 1}
    assert not list(root.rglob("*.tmp"))


def test_map_size_mismatch_names_the_sample(pascal_root):
    cv2.imwrite(str(pascal_root / "sal_distill/2008_000002.png"), np.zeros((H + 2, W), np.uint8))
    with pytest.raises(ValueError, match=r"sample '2008_000002': saliency map is \(10, 10\)"):
        PascalContextMTDataset(str(pascal_root), split="val", tasks=["saliency"]).load_sample(0)
