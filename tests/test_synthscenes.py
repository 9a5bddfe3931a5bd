"""Tests of the SynthScenes renderer and dataset: determinism, label exactness and the API."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from vision_mtl.datasets import synthscenes_render as render_mod
from vision_mtl.datasets.synthscenes import SPLIT_IDS, SynthScenesDataset, sample_key
from vision_mtl.datasets.synthscenes_render import (
    FIRST_OBJECT_ID,
    PART_CLASSES,
    SEMSEG_CLASSES,
    instance_edges,
    render_scene,
)
from vision_mtl.registry import DATASETS

LABELS = ("semseg", "depth", "normals", "edge", "saliency", "human_parts")
# Scene 206 has a silhouette pixel whose rounded normal leans away from the camera by ~1e-7.
KEYS = [sample_key(0, "train", i) for i in (*range(8), 206)]


@pytest.fixture(scope="module")
def scenes() -> list[dict]:
    return [render_scene(key) for key in KEYS]


def rays(scene: dict) -> np.ndarray:
    """Camera-frame ray directions (H×W×3, camera z = -1) from the returned intrinsics."""
    k = scene["camera"]["K"]
    h, w = scene["depth"].shape
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([(u - k[0, 2]) / k[0, 0], (k[1, 2] - v) / k[1, 1], -np.ones((h, w))], -1)


def world_points(scene: dict) -> np.ndarray:
    """Back-project every pixel with its depth into the world frame (H×W×3)."""
    cam = rays(scene) * scene["depth"][..., None]
    return cam @ scene["camera"]["R"].T + scene["camera"]["position"]


def test_same_key_same_scene_and_other_index_other_scene(scenes):
    again = render_scene(KEYS[0])
    for key in ("image", *LABELS, "instance"):
        assert np.array_equal(again[key], scenes[0][key]), key
    assert not np.array_equal(scenes[0]["image"], scenes[1]["image"])
    assert not np.array_equal(scenes[0]["depth"], scenes[1]["depth"])
    rng_scene = render_scene(np.random.default_rng(KEYS[0]))
    assert np.array_equal(rng_scene["image"], scenes[0]["image"])


def test_dataset_is_deterministic_across_instances():
    a = SynthScenesDataset(num_samples=3, tasks="pascal")
    b = SynthScenesDataset(num_samples=3, tasks="pascal")
    for key in ("image", "semseg", "human_parts", "saliency", "normals", "edge"):
        assert np.array_equal(a[2][key], b[2][key]), key
    assert not np.array_equal(a[0]["image"], a[1]["image"])


def test_train_and_val_never_share_a_scene():
    train = SynthScenesDataset("train", num_samples=2, tasks=["depth"])
    val = SynthScenesDataset("val", num_samples=2, tasks=["depth"])
    assert not np.array_equal(train[0]["image"], val[0]["image"])
    assert not np.array_equal(train[0]["depth"], val[0]["depth"])
    # An offset scheme (val = seed + c) would alias train seed c with val seed 0; keys cannot.
    keys = {
        sample_key(s, split, i) for s in (0, 1, 1_000_003) for split in SPLIT_IDS for i in range(50)
    }
    assert len(keys) == 3 * len(SPLIT_IDS) * 50
    shifted = SynthScenesDataset("train", num_samples=1, tasks=["depth"], seed=1_000_003)
    assert not np.array_equal(shifted[0]["image"], val[0]["image"])
    assert val[0]["meta"]["name"] == "synthscenes_val_000000"


@pytest.mark.parametrize("size", [(96, 128), (40, 72)])
def test_shapes_and_dtypes(size):
    scene = render_scene(7, size)
    h, w = size
    expected = dict(
        image=((h, w, 3), np.uint8),
        semseg=((h, w), np.uint8),
        depth=((h, w), np.float32),
        normals=((h, w, 3), np.float32),
        edge=((h, w), np.uint8),
        saliency=((h, w), np.uint8),
        human_parts=((h, w), np.uint8),
    )
    for key, (shape, dtype) in expected.items():
        assert scene[key].shape == shape and scene[key].dtype == dtype, key


def test_normals_are_unit_and_face_the_viewer(scenes):
    for scene in scenes:
        n = scene["normals"]
        assert np.isfinite(n).all()
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-4)
        d = rays(scene)
        facing = (n * d).sum(-1) / np.linalg.norm(d, axis=-1)
        assert facing.max() <= 1e-5  # never pointing away from the camera
        assert np.median(facing) < -0.3
        # z > 0 holds wherever perspective allows it: the floor and the back wall face the camera.
        sem, inst = scene["semseg"], scene["instance"]
        assert (n[sem == 0][:, 2] > 0).all()
        assert (n[inst == render_mod.WALL_BACK][:, 2] > 0.5).all()


def test_depth_is_positive_finite_and_exact(scenes):
    for scene in scenes:
        depth = scene["depth"]
        assert np.isfinite(depth).all() and (depth > 0).all()
        p, inst, room = world_points(scene), scene["instance"], scene["layout"]["room"]
        np.testing.assert_allclose(p[inst == render_mod.FLOOR][:, 1], 0, atol=2e-3)
        np.testing.assert_allclose(p[inst == render_mod.CEILING][:, 1], room["h"], atol=2e-3)
        np.testing.assert_allclose(p[inst == render_mod.WALL_LEFT][:, 0], -room["w"] / 2, atol=2e-3)
        np.testing.assert_allclose(p[inst == render_mod.WALL_RIGHT][:, 0], room["w"] / 2, atol=2e-3)
        np.testing.assert_allclose(p[inst == render_mod.WALL_BACK][:, 2], -room["d"], atol=2e-3)


def _surface_distance(obj: dict, p: np.ndarray) -> np.ndarray:
    """Distance-like residual of world points to the surface of ``obj`` (0 on the surface)."""
    x, y, z = p[:, 0] - obj["x"], p[:, 1], p[:, 2] - obj["z"]
    radial = np.hypot(x, z)
    if obj["kind"] == "sphere":
        return np.sqrt(radial**2 + (y - obj["r"]) ** 2) - obj["r"]
    if obj["kind"] == "cylinder":
        side = np.abs(radial - obj["r"]) + np.maximum(y - obj["h"], 0)
        cap = np.abs(y - obj["h"]) + np.maximum(radial - obj["r"], 0)
        return np.minimum(side, cap)
    if obj["kind"] == "cone":
        return np.abs(radial - obj["r"] / obj["h"] * (obj["h"] - y)) + np.maximum(y - obj["h"], 0)
    c, s = math.cos(obj["angle"]), math.sin(obj["angle"])
    local = np.stack([c * x - s * z, y - obj["h"] / 2, s * x + c * z], -1)
    half = np.array([obj["hx"], obj["h"] / 2, obj["hz"]])
    return np.abs((np.abs(local) - half).max(-1))


def test_object_pixels_lie_on_their_object(scenes):
    for scene in scenes:
        p, inst = world_points(scene), scene["instance"]
        for k, obj in enumerate(scene["layout"]["objects"]):
            sel = inst == FIRST_OBJECT_ID + k
            if sel.any():
                assert _surface_distance(obj, p[sel]).max() < 3e-3, obj["kind"]
                assert (p[sel][:, 1] > -1e-3).all()  # standing on the floor, not below it


def _expected_normals_and_parts(obj: dict, p: np.ndarray):
    """Outward world normals, part labels and a mask of unambiguous points (not on an edge,
    apex or part threshold, where the answer flips within rounding) for points on ``obj``."""
    x, y, z, h = p[:, 0] - obj["x"], p[:, 1], p[:, 2] - obj["z"], obj["h"]
    radial = np.maximum(np.hypot(x, z), 1e-9)
    side_part = np.where(y > h / 2, 2, 3)
    clear = np.abs(y - h / 2) > 1e-3
    zero = np.zeros_like(x)
    if obj["kind"] == "sphere":
        normal = np.stack([x, y - obj["r"], z], -1) / obj["r"]
        part = np.where(y > 2 * h / 3, 1, side_part)
        clear &= np.abs(y - 2 * h / 3) > 1e-3
    elif obj["kind"] == "cone":
        k = obj["r"] / h
        normal = np.stack([x / radial, np.full_like(x, k), z / radial], -1) / math.hypot(1, k)
        part = np.where(y > 2 * h / 3, 1, side_part)
        clear &= (np.abs(y - 2 * h / 3) > 1e-3) & (radial > 1e-2)
    elif obj["kind"] == "cylinder":
        cap = np.abs(y - h) < 1e-3
        normal = np.where(
            cap[:, None], [0.0, 1.0, 0.0], np.stack([x, zero, z], -1) / radial[:, None]
        )
        part = np.where(cap, 1, side_part)
        clear &= ~(cap & (np.abs(radial - obj["r"]) < 1e-3))
    else:
        c, s = math.cos(obj["angle"]), math.sin(obj["angle"])
        local = np.stack([c * x - s * z, y - h / 2, s * x + c * z], -1)
        excess = np.abs(local) - np.array([obj["hx"], h / 2, obj["hz"]])
        face = excess.argmax(-1)
        n_local = np.eye(3)[face] * np.sign(local)
        normal = np.stack(
            [
                c * n_local[:, 0] + s * n_local[:, 2],
                n_local[:, 1],
                -s * n_local[:, 0] + c * n_local[:, 2],
            ],
            -1,
        )
        part = np.where(face == 1, 1, side_part)
        top_two = np.sort(excess, -1)[:, -2:]
        clear &= top_two[:, 1] - top_two[:, 0] > 1e-3
    return normal, part, clear


def test_object_labels_follow_the_layout(scenes):
    for scene in scenes:
        p, inst, sem = world_points(scene), scene["instance"], scene["semseg"]
        room_class = {0: 0, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1}  # floor, ceiling, four walls
        for room_id, cls in room_class.items():
            assert (sem[inst == room_id] == cls).all()
        for k, obj in enumerate(scene["layout"]["objects"]):
            sel = inst == FIRST_OBJECT_ID + k
            if not sel.any():
                continue
            assert (sem[sel] == 3 + render_mod.OBJECT_KINDS.index(obj["kind"])).all()
            normal, part, clear = _expected_normals_and_parts(obj, p[sel])
            normal_cam = normal @ scene["camera"]["R"]  # rows: R^T n
            got = scene["normals"][sel]
            np.testing.assert_allclose(
                got[clear], normal_cam[clear], atol=3e-3, err_msg=obj["kind"]
            )
            assert np.array_equal(scene["human_parts"][sel][clear], part[clear]), obj["kind"]


def test_floor_normals_are_the_camera_frame_up_vector(scenes):
    for scene in scenes:
        floor = scene["semseg"] == 0
        assert floor.sum() > 1
        normals = scene["normals"][floor]
        assert np.ptp(normals, axis=0).max() < 1e-4  # one plane, one normal
        up = scene["camera"]["R"].T @ np.array([0.0, 1.0, 0.0])
        pitch = math.radians(scene["camera"]["pitch"])
        np.testing.assert_allclose(normals[0], up, atol=1e-4)
        assert (
            abs(normals[0][1] - math.cos(pitch) * math.cos(math.radians(scene["camera"]["roll"])))
            < 1e-4
        )
        # Floor depth grows towards the top of the image in every column.
        depth = np.where(floor, scene["depth"], np.nan)
        for col in range(depth.shape[1]):
            column = depth[:, col][floor[:, col]]
            assert (np.diff(column) < 0).all()  # rows go down, depth must shrink


def test_semseg_range_and_class_coverage(scenes):
    seen = set()
    for scene in scenes:
        sem = scene["semseg"]
        assert sem.max() < len(SEMSEG_CLASSES)
        assert {0, 1} <= set(np.unique(sem).tolist())  # floor and walls in every view
        assert (sem >= 3).any()
        seen |= set(np.unique(sem).tolist())
    assert seen == set(range(len(SEMSEG_CLASSES)))


def test_saliency_and_parts_follow_semseg(scenes):
    for scene in scenes:
        sal, parts, sem = scene["saliency"], scene["human_parts"], scene["semseg"]
        assert np.array_equal(sal, (sem >= 3).astype(np.uint8))
        assert np.array_equal(parts == 0, sal == 0)
        assert parts.max() < len(PART_CLASSES)
        # "top" faces up: its world normal has a positive vertical component.
        up = scene["camera"]["R"].T @ np.array([0.0, 1.0, 0.0])
        top = scene["normals"][parts == 1]
        assert (top @ up > 0).all()
    assert {1, 2, 3} <= set(np.unique(np.stack([s["human_parts"] for s in scenes])).tolist())


def test_edges_are_thin_and_on_instance_changes(scenes):
    for scene in scenes:
        edge, inst = scene["edge"].astype(bool), scene["instance"]
        change = np.zeros_like(edge)
        change[:, :-1] |= inst[:, :-1] != inst[:, 1:]
        change[:-1] |= inst[:-1] != inst[1:]
        assert not (edge & ~change).any()
        assert edge.sum() >= 0.85 * change.sum()  # thinning drops only junction pixels
        assert not (edge[:-1, :-1] & edge[1:, :-1] & edge[:-1, 1:] & edge[1:, 1:]).any()
        assert edge.any()


def test_instance_edges_on_a_toy_map():
    inst = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
    edge = instance_edges(inst)
    assert edge.tolist() == [[0, 1, 0], [1, 1, 1], [0, 0, 0]]
    sliver = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]])  # one-pixel-wide object
    thin = instance_edges(sliver)
    assert not (thin[:-1, :-1] & thin[1:, :-1] & thin[:-1, 1:] & thin[1:, 1:]).any()


def test_culling_does_not_change_the_image(monkeypatch, scenes):
    monkeypatch.setattr(
        render_mod, "_object_rect", lambda obj, o, rot, f, h, w: (slice(0, h), slice(0, w))
    )
    for key, scene in zip(KEYS[:3], scenes):
        full = render_scene(key)
        for name in ("image", *LABELS):
            assert np.array_equal(full[name], scene[name]), name


def test_task_selection_and_meta():
    ds = SynthScenesDataset(num_samples=4, tasks="nyud", image_size=(32, 48))
    sample = ds[3]
    assert set(sample) == {"image", "semseg", "depth", "normals", "edge", "meta"}
    assert sample["meta"] == dict(name="synthscenes_train_000003", ori_shape=(32, 48), index=3)
    assert len(ds) == 4
    assert ds.metainfo["num_classes"] == {"semseg": 7}
    assert ds.metainfo["class_names"]["semseg"] == list(SEMSEG_CLASSES)
    only = SynthScenesDataset(num_samples=1, tasks=["saliency", "human_parts"])
    assert set(only[0]) == {"image", "saliency", "human_parts", "meta"}
    with pytest.raises(IndexError):
        ds[4]


def test_unknown_tasks_and_task_sets_raise():
    with pytest.raises(KeyError, match="bogus"):
        SynthScenesDataset(tasks=["semseg", "bogus"])
    with pytest.raises(KeyError, match="disparity"):
        SynthScenesDataset(tasks=["disparity"])  # a known task it does not provide
    with pytest.raises(KeyError, match="cityscapes"):
        SynthScenesDataset(tasks="cityscapes")


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(split="test"), "'test'"),
        (dict(image_size=(8, 128)), "(8, 128)"),
        (dict(image_size=(96,)), "(96,)"),
        (dict(image_size=(96.0, 128)), "96.0"),
        (dict(num_samples=0), "num_samples.*0"),
        (dict(seed=-1), "seed.*-1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, text):
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
        SynthScenesDataset(**kwargs)


def test_cache_renders_once_and_hands_out_copies(monkeypatch):
    calls = []
    real = render_mod.render_scene

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("vision_mtl.datasets.synthscenes.render_scene", counting)
    ds = SynthScenesDataset(num_samples=2, tasks=["depth"], image_size=(24, 32), cache=True)
    first = ds[1]
    first["depth"][:] = -1  # a transform writing in place must not reach the cache
    second = ds[1]
    assert len(calls) == 1 and (second["depth"] > 0).all()
    uncached = SynthScenesDataset(num_samples=2, tasks=["depth"], image_size=(24, 32))
    uncached[1], uncached[1]
    assert len(calls) == 3


def test_registry_build_and_pipeline():
    ds = DATASETS.build(
        dict(type="SynthScenesDataset", num_samples=2, image_size=(24, 32), tasks=["edge"])
    )
    assert isinstance(ds, SynthScenesDataset)

    def tag(sample):
        sample["meta"]["tagged"] = True
        return sample

    piped = SynthScenesDataset(num_samples=1, tasks=["edge"], image_size=(24, 32), pipeline=[tag])
    assert piped[0]["meta"]["tagged"]


def test_benchmark_tool_writes_json(tmp_path, monkeypatch, capsys):
    # Loaded in-process with its thread settings and core pinning neutralised: they would
    # otherwise outlive this test in the pytest process.
    for var in ("OMP", "OPENBLAS", "MKL", "NUMEXPR"):
        monkeypatch.setenv(f"{var}_NUM_THREADS", os.environ.get(f"{var}_NUM_THREADS", "1"))
    monkeypatch.setenv("VECLIB_MAXIMUM_THREADS", os.environ.get("VECLIB_MAXIMUM_THREADS", "1"))
    path = Path(__file__).resolve().parents[1] / "tools/analysis_tools/benchmark_synthscenes.py"
    spec = importlib.util.spec_from_file_location("benchmark_synthscenes", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "pin_to_one_core", lambda cpu: None)
    out = tmp_path / "bench" / "synthscenes.json"
    tool.main(["--sizes", "16x24", "--samples", "1", "--repeats", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["threads"] == 1
    stats = result["sizes"]["16x24"]
    assert stats["samples_per_s_best"] >= stats["samples_per_s_median"] > 0
    assert len(stats["all_samples_per_s"]) == 2
    assert "16x24" in capsys.readouterr().out and not list(out.parent.glob("*.tmp"))
    with pytest.raises(SystemExit):
        tool.main(["--sizes", "96by128"])
