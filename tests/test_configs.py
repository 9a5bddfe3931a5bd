"""Every config under configs/ builds, and its model runs one forward pass on its own data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_tool
from mmengine.registry import DefaultScope

from vision_mtl.apis import init_model, load_config
from vision_mtl.datasets import multitask_collate
from vision_mtl.registry import DATASETS, SCOPE

CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.py") if "_base_" not in p.parts)


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds_and_runs_forward(path: Path):
    cfg = load_config(path)
    model = init_model(cfg, device="cpu")
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(dict(cfg.val_dataloader.dataset, num_samples=1))
    assert set(model.tasks) <= set(dataset.tasks)
    batch = multitask_collate([dataset[0]])
    with torch.no_grad():
        result = model(**model.data_preprocessor(batch, False), mode="predict")[0]
    assert set(result["pred"]) == set(model.tasks)
    h, w = batch["meta"][0]["ori_shape"]
    assert all(v.shape[-2:] == (h, w) for v in result["pred"].values())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds_a_runner_with_its_loops(path: Path, tmp_path):
    """Everything the Runner builds lazily: loops, dataloaders, evaluators, optimizer, schedules."""
    from mmengine.runner import Runner

    cfg = load_config(path, {"train_dataloader.dataset.num_samples": 2}, work_dir=str(tmp_path))
    runner = Runner.from_cfg(cfg)
    loop = runner.build_train_loop(cfg.train_cfg)
    assert loop.max_iters == cfg.train_cfg.max_iters
    runner.build_optim_wrapper(cfg.optim_wrapper)
    runner.build_val_loop(cfg.val_cfg)
    runner.build_test_loop(cfg.test_cfg)
    assert next(iter(loop.dataloader))["inputs"]


def test_print_config_resolves_bases(capsys):
    load_tool("print_config").main([str(CONFIGS[0]), "--cfg-options", "train_cfg.max_iters=7"])
    text = capsys.readouterr().out
    assert "max_iters=7" in text and "_base_" not in text
