"""The MultiMAE pretraining configs at toy size: they train, checkpoint and draw their pictures;
the pseudo-label folder dataset reads its layout and names a missing file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, load_tool

from vision_mtl.datasets import PseudoLabelFolderDataset
from vision_mtl.models.multimae.pictures import grid_shape, reconstruction_grid

SYNTH = ROOT / "configs/multimae/multimae_vit-tiny-p8_1xb8-800_synthscenes-96x128.py"
FOLDER = ROOT / "configs/multimae/multimae_vit-tiny-p8_1xb8-800_folder-96x128.py"
SIZE = (32, 48)  # 4 x 6 patches of 8: 24 tokens per modality, 72 over three
# The configs shrunk as conftest's TINY_OPTIONS shrink the quickstart: a 2-block 32-d ViT,
# 1/6 of the 72 tokens visible (as the configs' 96 of 576), 2 iterations.
MODEL_OPTIONS = {
    "model.encoder.model_kwargs": dict(
        patch_size=8, img_size=SIZE, dynamic_img_size=True, embed_dim=32, depth=2, num_heads=2
    ),
    "model.image_size": SIZE,
    "model.num_visible": 12,
    "model.decoder": dict(dim=32, depth=1, num_heads=2),
}
TRAIN_OPTIONS = {
    "train_dataloader.batch_size": 2,
    "train_dataloader.num_workers": 0,
    "train_dataloader.persistent_workers": False,
    "train_dataloader.dataset.image_size": SIZE,
    "train_cfg.max_iters": 2,
    "default_hooks.checkpoint.interval": 2,
    "default_hooks.logger.interval": 1,
    "param_scheduler": [dict(type="ConstantLR", factor=1.0, by_epoch=False)],
    "custom_hooks": [
        dict(type="TaskCheckHook"),
        dict(type="MultiMAEGridHook", interval=1, num_samples=2),
    ],
}
SYNTH_OPTIONS = {**MODEL_OPTIONS, **TRAIN_OPTIONS, "train_dataloader.dataset.num_samples": 4}
NUM_CLASSES = 5
FOLDER_OPTIONS = {
    **MODEL_OPTIONS,
    **TRAIN_OPTIONS,
    "model.modalities.semseg.num_classes": NUM_CLASSES,
    "train_dataloader.dataset.num_classes": NUM_CLASSES,
}


def tiny_config(base: Path, options: dict, folder: Path) -> Path:
    """A config file in ``folder`` inheriting ``base`` with the dotted ``options`` applied.

    (``--cfg-options`` parses no dicts in lists, such as ``custom_hooks``.)
    """
    nested: dict = {}
    for key, value in options.items():
        *parents, last = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = folder / f"tiny_{base.name}"
    lines = [f"_base_ = [{str(base)!r}]"] + [f"{k} = {v!r}" for k, v in nested.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(config: Path, work: Path, options: dict, *extra: str) -> None:
    tiny = tiny_config(config, options, work.parent)
    load_tool("train").main([str(tiny), "--work-dir", str(work), *extra])


def write_folder(root: Path, ids=("a", "b", "c"), shape=(40, 56)) -> Path:
    """A pseudo-label folder: RGB PNG/JPEG, uint16 depth in millimetres, uint8 labels."""
    rng = np.random.default_rng(0)
    for sub in ("rgb", "depth", "semseg"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, sample_id in enumerate(ids):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        suffix = ".jpg" if i == 1 else ".png"
        assert cv2.imwrite(str(root / "rgb" / f"{sample_id}{suffix}"), image)
        depth = rng.integers(500, 5000, shape).astype(np.uint16)
        depth[0, 0] = 0  # no reading
        assert cv2.imwrite(str(root / "depth" / f"{sample_id}.png"), depth)
        labels = rng.integers(0, NUM_CLASSES, shape).astype(np.uint8)
        labels[-1, -1] = 255
        assert cv2.imwrite(str(root / "semseg" / f"{sample_id}.png"), labels)
    return root


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """The SynthScenes pretraining config trained for 2 tiny iterations."""
    work = tmp_path_factory.mktemp("multimae_synth") / "work"
    _train(SYNTH, work, SYNTH_OPTIONS)
    return work


def test_synthscenes_pretraining_trains_and_checkpoints(synth_run):
    assert (synth_run / "iter_2.pth").is_file()
    state = torch.load(synth_run / "iter_2.pth", map_location="cpu", weights_only=False)
    assert any(k.startswith("adapters.semseg.") for k in state["state_dict"])
    # the hook drew after iteration 1 and at the end of training
    pictures = sorted(p.name for p in (synth_run / "multimae_vis").glob("*.png"))
    assert pictures == ["iter_1.png", "iter_2.png"]
    assert not list((synth_run / "multimae_vis").glob(".*.tmp"))
    grid = cv2.imread(str(synth_run / "multimae_vis" / "iter_2.png"))
    assert grid.shape[:2] == grid_shape(2, 3, SIZE)


def test_visualize_tool_writes_the_grid(synth_run, tmp_path):
    out = tmp_path / "pictures"
    config = tiny_config(SYNTH, SYNTH_OPTIONS, tmp_path)
    path = load_tool("visualize_multimae").main(
        [str(config), str(synth_run / "iter_2.pth"), "--out", str(out), "--num", "3"]
    )
    grid = cv2.imread(str(path))
    # 3 samples x 3 modalities rows of 32x48 maps enlarged 3x, 3 columns, a caption strip on top
    assert grid.shape[:2] == grid_shape(3, 3, SIZE)
    assert grid.shape[1] == 3 * 48 * 3
    assert grid.shape[0] > 9 * 32 * 3


def test_reconstruction_grid_greys_masked_patches():
    h, w = SIZE
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[-8:, -8:] = True  # the last patch (the top-left holds the label)
    sample = dict(
        pred={"rgb": torch.zeros(3, h, w), "semseg": torch.zeros(h, w, dtype=torch.int64)},
        mask={"rgb": mask, "semseg": ~mask},
        target={"rgb": torch.ones(3, h, w), "semseg": torch.ones(h, w, dtype=torch.int64)},
    )
    grid = reconstruction_grid([sample], mean=(100, 100, 100), std=(50, 50, 50), num_classes=3,
                               min_tile_height=h)  # fmt: skip
    assert grid.shape[:2] == grid_shape(1, 2, SIZE, min_tile_height=h)
    top = grid.shape[0] - 2 * h
    rgb_masked = grid[top : top + h, :w]
    assert (rgb_masked[-9, -9] == 150).all()  # target 1 -> 1 * 50 + 100
    assert (rgb_masked[-8:, -8:] == 128).all()
    assert (grid[top : top + h, w : 2 * w][-1, -1] == 100).all()  # prediction 0 -> the mean


def test_folder_dataset_reads_the_layout(tmp_path):
    root = write_folder(tmp_path / "folder")
    dataset = PseudoLabelFolderDataset(str(root), num_classes=NUM_CLASSES, image_size=SIZE)
    assert dataset.ids == ["a", "b", "c"] and len(dataset) == 3
    sample = dataset.load_sample(1)  # the JPEG one
    assert sample["image"].shape == (*SIZE, 3) and sample["image"].dtype == np.uint8
    depth = cv2.imread(str(root / "depth" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert sample["depth"].dtype == np.float32 and sample["depth"].shape == SIZE
    # nearest-neighbour resizing: every value is a stored millimetre value in metres
    assert np.isin(sample["depth"], depth.astype(np.float32) * np.float32(0.001)).all()
    assert set(np.unique(sample["semseg"])) <= set(range(NUM_CLASSES)) | {255}
    assert sample["meta"]["file_shape"] == (40, 56)
    full = PseudoLabelFolderDataset(str(root), num_classes=NUM_CLASSES, depth_scale=0.01)
    kept = full.load_sample(0)
    assert kept["depth"][0, 0] == 0  # no reading stays 0
    raw = cv2.imread(str(root / "depth" / "a.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(kept["depth"], raw.astype(np.float32) * 0.01, rtol=1e-6)
    assert dataset.metainfo["num_classes"] == {"semseg": NUM_CLASSES}


def test_folder_dataset_names_a_missing_pseudo_label(tmp_path):
    root = write_folder(tmp_path / "folder")
    (root / "semseg" / "b.png").unlink()
    dataset = PseudoLabelFolderDataset(str(root), num_classes=NUM_CLASSES)
    dataset.load_sample(0)
    with pytest.raises(FileNotFoundError, match=r"semseg.*b\.png"):
        dataset.load_sample(1)


def test_folder_dataset_refuses_bad_labels_and_roots(tmp_path):
    root = write_folder(tmp_path / "folder")
    with pytest.raises(ValueError, match=r"a\.png.*class id"):
        PseudoLabelFolderDataset(str(root), num_classes=2).load_sample(0)
    with pytest.raises(FileNotFoundError, match="rgb"):
        PseudoLabelFolderDataset(str(tmp_path / "nowhere"), num_classes=3)


def test_folder_config_trains(tmp_path):
    root = write_folder(tmp_path / "folder")
    work = tmp_path / "work"
    _train(FOLDER, work, FOLDER_OPTIONS, "--data-root", str(root))
    assert (work / "iter_2.pth").is_file()
    assert (work / "multimae_vis" / "iter_2.png").is_file()
