"""A few training iterations and an evaluation through each real dataset's config, on data
written in that dataset's layout by tools/make_synthscenes.py (tiny backbone override)."""

from __future__ import annotations

import math

import pytest
from conftest import ROOT
from test_configs import data_roots, prepared  # noqa: F401  (data_roots is a fixture)

from vision_mtl.apis import build_train_runner

TINY_VIT = dict(
    model_name="vit_tiny_patch16_224",
    out_indices=[0, 1],
    model_kwargs=dict(img_size=(64, 96), embed_dim=32, depth=2, num_heads=2, dynamic_img_size=True),
)


@pytest.mark.parametrize(
    "name, keys",
    [
        (
            "baseline_vit-b16_2xb2-40k_nyud-448x576.py",
            ("depth/rmse", "edge/odsF_approx", "multitask/delta_m_approx"),
        ),
        (
            "baseline_vit-b16_2xb2-40k_pascal-512x512.py",
            ("saliency/maxF", "edge/odsF_approx", "multitask/delta_m_approx"),
        ),
        ("baseline_vit-b16_2xb2-40k_cityscapes-512x1024.py", ("semseg/mIoU", "disparity/rmse")),
    ],
)
def test_real_dataset_config_trains_and_evaluates(name, keys, data_roots, tmp_path):  # noqa: F811
    config = ROOT / "configs/baseline" / name
    options = {
        "train_cfg.max_iters": 2,
        "train_cfg.val_interval": 2,
        "param_scheduler.0.end": 2,
        "model.data_preprocessor.size": (64, 96),
        "model.decoder.channels": 16,
        "train_dataloader.dataset.pipeline.0.crop_size": (64, 96),
    }
    cfg = prepared(config, data_roots, options)
    cfg.model.backbone.update(TINY_VIT)
    cfg.work_dir = str(tmp_path)
    runner = build_train_runner(cfg)
    runner.train()
    assert runner.iter == 2 and (tmp_path / "iter_2.pth").is_file()
    metrics = runner.val_loop.run()
    for key in keys:
        assert math.isfinite(metrics[key]), key


def test_browse_dataset_draws_augmented_samples(data_roots, tmp_path):  # noqa: F811
    import cv2
    from conftest import load_tool

    config = ROOT / "configs/baseline/baseline_vit-b16_2xb2-40k_nyud-448x576.py"
    root = data_roots["NYUDv2Dataset"]
    paths = load_tool("browse_dataset").main(
        [str(config), "--out", str(tmp_path / "browse"), "--num", "2", "--cfg-options",
         f"train_dataloader.dataset.data_root={root}",
         "train_dataloader.dataset.pipeline.0.crop_size=(64,96)"]
    )  # fmt: skip
    assert len(paths) == 2
    grid = cv2.imread(str(paths[0]))
    assert grid.shape[1] == 5 * 96 * 3  # input + 4 task overlays, 96 px enlarged 3x (192 px high)
