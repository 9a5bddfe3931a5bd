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
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


@pytest.fixture(scope="session")
def data_roots(tmp_path_factory):
    """Real-layout data written by tools/make_synthscenes.py, for configs of real datasets."""
    nyud = tmp_path_factory.mktemp("synth_nyud")
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "nyud",
            "--out",
            str(nyud),
            "--num",
            "2",
            "--val-num",
            "1",
            "--size",
            "48",
            "64",
        ]
    )
    pascal = tmp_path_factory.mktemp("synth_pascal")
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "pascal",
            "--out",
            str(pascal),
            "--num",
            "2",
            "--val-num",
            "1",
            "--size",
            "48",
            "64",
        ]
    )
    cityscapes = tmp_path_factory.mktemp("synth_cityscapes")
    load_tool("make_synthscenes").main(
        ["--layout", "cityscapes", "--out", str(cityscapes), "--num", "2", "--val-num", "1",
         "--size", "48", "64"]
    )  # fmt: skip
    return {
        "NYUDv2Dataset": nyud,
        "PascalContextMTDataset": pascal,
        "CityscapesMTDataset": cityscapes,
    }


def prepared(path: Path, roots: dict, options: dict | None = None):
    """A config pointed at local fixture data, without pretrained files or worker processes."""
    cfg = load_config(path, options)
    if cfg.model.backbone.get("pretrained"):
        cfg.model.backbone.pretrained = None  # the missing-file error is tested on its own
    for name in LOADERS:
        loader = cfg[name]
        loader.num_workers, loader.persistent_workers = 0, False
        if loader.dataset.type in roots:
            loader.dataset.data_root = str(roots[loader.dataset.type])
    return cfg


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds_and_runs_forward(path: Path, data_roots):
    cfg = prepared(path, data_roots)
    model = init_model(cfg, device="cpu")
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(cfg.val_dataloader.dataset)
    assert set(model.tasks) <= set(dataset.tasks)
    batch = multitask_collate([dataset[0]])
    with torch.no_grad():
        result = model(**model.data_preprocessor(batch, False), mode="predict")[0]
    assert set(result["pred"]) == set(model.tasks)
    h, w = batch["meta"][0]["ori_shape"]
    assert all(v.shape[-2:] == (h, w) for v in result["pred"].values())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds_a_runner_with_its_loops(path: Path, tmp_path, data_roots):
    """Everything the Runner builds lazily: loops, dataloaders, evaluators, optimizer, schedules."""
    from mmengine.runner import Runner

    cfg = prepared(path, data_roots)
    cfg.work_dir = str(tmp_path)
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
