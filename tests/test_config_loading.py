"""Loading configs as users override them: one data root, schedules that fit the run, and
trained checkpoints that need no ImageNet file."""

from __future__ import annotations

import pytest
from conftest import QUICKSTART, ROOT, TINY_OPTIONS, load_tool, run_schedulers

from vision_mtl.apis import init_model, load_config

NYUD = ROOT / "configs/baseline/baseline_vit-b16_2xb2-40k_nyud-448x576.py"
MISSING = "/nonexistent/vit_base_patch16_384.safetensors"


def _roots(cfg) -> dict[str, str]:
    return {
        n: cfg[n].dataset.data_root
        for n in ("train_dataloader", "val_dataloader", "test_dataloader")
    }


@pytest.mark.parametrize("how", ["argument", "override"])
def test_one_data_root_reaches_every_dataloader(tmp_path, how):
    root = str(tmp_path / "NYUDv2")
    if how == "argument":
        cfg = load_config(NYUD, data_root=root)
    else:
        cfg = load_config(NYUD, {"data_root": root})
    assert set(_roots(cfg).values()) == {root} and cfg.data_root == root


def test_overriding_some_dataloaders_only_is_called_out(tmp_path):
    options = {
        f"{n}.dataset.data_root": str(tmp_path) for n in ("train_dataloader", "val_dataloader")
    }
    with pytest.warns(UserWarning, match=r"different data roots .*test_dataloader: 'data/NYUDv2'"):
        cfg = load_config(NYUD, options)
    assert _roots(cfg)["test_dataloader"] == "data/NYUDv2"


def test_data_root_on_a_generated_dataset_is_refused():
    with pytest.raises(KeyError, match=r"data_root: no dataset .* reads a data_root"):
        load_config(QUICKSTART, data_root="data/anything")


def test_a_shorter_run_gets_the_whole_schedule():
    cfg = load_config(QUICKSTART, {"train_cfg.max_iters": 60})
    assert [s["end"] for s in cfg.param_scheduler] == [4, 60]  # warm-up 50/800 → 4/60
    curve = run_schedulers(list(cfg.param_scheduler), 60)
    peak = max(curve)
    assert curve[0] < 0.05 * peak and curve[-1] < 0.1 * peak  # warms up, then decays to ~0
    assert curve.index(peak) <= 5


def test_an_explicit_schedule_is_left_alone():
    options = {"train_cfg.max_iters": 60, "param_scheduler": TINY_OPTIONS["param_scheduler"]}
    cfg = load_config(QUICKSTART, options)
    assert cfg.param_scheduler == TINY_OPTIONS["param_scheduler"]


def test_a_trained_checkpoint_needs_no_pretrained_file(tmp_path):
    """init_model and tools/test.py with a checkpoint never open the backbone's ImageNet file."""
    cfg = load_config(QUICKSTART, dict(TINY_OPTIONS), work_dir=str(tmp_path / "work"))
    config = tmp_path / "tiny.py"
    cfg.dump(str(config))
    load_tool("train").main([str(config), "--work-dir", str(tmp_path / "work")])
    checkpoint = tmp_path / "work" / "iter_4.pth"
    missing = {"model.backbone.pretrained": MISSING}
    with pytest.raises(FileNotFoundError, match="pretrained weights .* not found"):
        init_model(config, None, "cpu", missing)  # without a checkpoint the file is needed
    model = init_model(config, checkpoint, "cpu", missing)
    assert model.cfg.model.backbone.pretrained is None
    argv = [str(config), str(checkpoint), "--work-dir", str(tmp_path / "test")]
    metrics = load_tool("test").main(
        [*argv, "--cfg-options", f"model.backbone.pretrained={MISSING}"]
    )
    assert "semseg/mIoU" in metrics["model"]
