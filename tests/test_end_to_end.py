"""End to end on a tiny config: train, save, resume, evaluate, draw, infer — and fail cleanly."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import load_tool

from vision_mtl.apis import build_train_runner, inference, init_model
from vision_mtl.datasets import SynthScenesDataset


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def trained(tiny_cfg, tmp_path):
    """A tiny model trained for 4 iterations through tools/train.py."""
    config = tmp_path / "tiny.py"
    tiny_cfg.dump(str(config))
    work = Path(tiny_cfg.work_dir)
    load_tool("train").main([str(config), "--work-dir", str(work)])
    return config, work


def test_train_save_resume_evaluate_infer(capfd, trained, tmp_path):
    config, work = trained
    progress = capfd.readouterr().err  # capfd is set up before `trained` runs
    assert "train: 100%" in progress and "4/4" in progress  # the progress bar with ETA ran
    assert (work / "iter_2.pth").is_file() and (work / "iter_4.pth").is_file()
    assert Path((work / "last_checkpoint").read_text().strip()).name == "iter_4.pth"
    # Checkpoints load under torch's weights_only default (the allow-list, not a global switch).
    ckpt = torch.load(work / "iter_4.pth", map_location="cpu")
    assert ckpt["meta"]["iter"] == 4

    # Resume: the runner continues at iteration 4 with the saved weights, then trains to 6.
    from vision_mtl.apis import load_config

    cfg = load_config(config, {"train_cfg.max_iters": 6}, work_dir=str(work))
    runner = build_train_runner(cfg, resume=True)
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.load_or_resume()
    assert runner.iter == 4  # the saved iteration count, not a fresh start
    for name, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, ckpt["state_dict"][name], msg=name)
    saved_steps = [s["step"] for s in ckpt["optimizer"]["state"].values()]
    assert saved_steps and all(float(s) == 4 for s in saved_steps)
    runner = build_train_runner(load_config(config, {"train_cfg.max_iters": 6}, str(work)), True)
    runner.train()
    assert runner.iter == 6
    resumed = torch.load(work / "iter_6.pth", map_location="cpu")
    assert resumed["meta"]["iter"] == 6
    assert resumed["message_hub"]["runtime_info"]["iter"] == 5  # last finished iteration index

    # Evaluate with pictures, JSON and the trivial baselines beside the model.
    out = tmp_path / "metrics.json"
    shows = tmp_path / "pictures"
    columns = load_tool("test").main(
        [
            str(config),
            str(work / "last_checkpoint"),
            "--out",
            str(out),
            "--show-dir",
            str(shows),
            "--max-show",
            "3",
            "--trivial-baseline",
            "--per-class",
        ]
    )
    saved = json.loads(out.read_text())
    for key in ("semseg/mIoU", "depth/rmse", "normals/mean", "edge/odsF"):
        assert math.isfinite(saved["model"][key]) and math.isfinite(saved["trivial"][key])
    assert saved["trivial"]["edge/odsF"] == 0.0  # an all-zero boundary map finds nothing
    assert columns["model"]["semseg/mIoU"] == pytest.approx(saved["model"]["semseg/mIoU"])
    pngs = sorted(shows.glob("*.png"))
    assert len(pngs) == 3
    grid = cv2.imread(str(pngs[0]))
    assert grid.shape[1] == 5 * 64 * 6  # input + 4 tasks, 64 px wide, enlarged 6x to 192 px high

    # Inference on an image file returns every task at the image's size.
    sample = SynthScenesDataset(split="val", num_samples=1, image_size=(40, 56)).load_sample(0)
    image_path = tmp_path / "room.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(sample["image"], cv2.COLOR_RGB2BGR))
    model = init_model(config, work / "iter_6.pth", device="cpu")
    pred = inference(model, image_path)
    assert set(pred) == {"semseg", "depth", "normals", "edge"}
    assert pred["semseg"].shape == (40, 56) and pred["semseg"].dtype == np.int64
    assert pred["normals"].shape == (40, 56, 3)
    np.testing.assert_allclose(np.linalg.norm(pred["normals"], axis=-1), 1.0, atol=1e-4)
    assert ((pred["edge"] >= 0) & (pred["edge"] <= 1)).all() and (pred["depth"] >= 0).all()

    # tools/visualize.py draws test-set samples with ground truth.
    written = load_tool("visualize").main(
        [str(config), str(work / "iter_6.pth"), "--out", str(tmp_path / "vis"), "--num", "2"]
    )
    assert len(written) == 2 and all(p.is_file() for p in written)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(trained):
    config, work = trained
    before = {p.name: _digest(p) for p in work.glob("iter_*.pth")}
    pointer = (work / "last_checkpoint").read_text()
    from vision_mtl.apis import load_config

    cfg = load_config(
        config,
        {"train_cfg.max_iters": 8, "model.tasks.depth.loss_weight": float("nan")},
        work_dir=str(work),
    )
    runner = build_train_runner(cfg, resume=True)
    with pytest.raises(FloatingPointError, match=r"task 'depth'.*iteration 5"):
        runner.train()
    assert {p.name: _digest(p) for p in work.glob("iter_*.pth")} == before
    assert (work / "last_checkpoint").read_text() == pointer
    assert not list(work.glob(".*.tmp"))  # no half-written file left behind


def test_model_task_missing_from_dataset_fails_before_training(tiny_cfg):
    tiny_cfg.model.tasks["saliency"] = dict(loss_weight=1.0)
    runner = build_train_runner(tiny_cfg)
    with pytest.raises(KeyError, match=r"saliency.*SynthScenesDataset"):
        runner.train()
    assert runner.iter == 0


def test_evaluator_scoring_a_task_the_model_lacks_fails_before_training(tiny_cfg):
    del tiny_cfg.model.tasks["edge"]
    tiny_cfg.train_dataloader.dataset.tasks = ["semseg", "depth", "normals"]
    runner = build_train_runner(tiny_cfg)
    with pytest.raises(KeyError, match=r"evaluator MultiTaskMetric scores task\(s\) \['edge'\]"):
        runner.train()
    assert runner.iter == 0 and not list(Path(tiny_cfg.work_dir).glob("iter_*.pth"))


def test_dataset_asked_for_unprovided_task_names_both(tiny_cfg):
    tiny_cfg.train_dataloader.dataset.tasks = ["semseg", "disparity"]
    runner = build_train_runner(tiny_cfg)
    with pytest.raises(KeyError, match=r"'disparity'.*SynthScenesDataset"):
        runner.train()


def test_pascal_task_set_trains_and_evaluates(tmp_path):
    """The PASCAL-like config (parts, saliency) runs the same loop: every loss and metric."""
    from conftest import ROOT, TINY_OPTIONS

    from vision_mtl.apis import load_config

    options = {k: v for k, v in TINY_OPTIONS.items() if "dataset.num_samples" not in k}
    options.update({"train_cfg.max_iters": 2, "train_cfg.val_interval": 2})
    config = (
        ROOT / "configs/baseline/baseline_efficientvit-b1_1xb8-800_synthscenes-pascal-96x128.py"
    )
    cfg = load_config(config, options, work_dir=str(tmp_path / "pascal"))
    cfg.train_dataloader.dataset.num_samples = 8
    cfg.val_dataloader.dataset.num_samples = 4
    runner = build_train_runner(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    for key in (
        "human_parts/mIoU",
        "saliency/maxF",
        "semseg/mIoU",
        "normals/mean",
        "edge/odsF_approx",
    ):
        assert math.isfinite(metrics[key]), key
    losses = runner.message_hub.log_scalars
    assert {"train/loss_human_parts", "train/loss_saliency"} <= set(losses)
