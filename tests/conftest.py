"""Shared fixtures: tiny versions of the real configs (litgpt style: shrink, don't invent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs/quickstart/baseline_efficientvit-b1_8xb-800_synthscenes-nyud-96x128.py"

# The quickstart config at toy size: one narrow block per stage, 32x64 images, 4 iterations.
TINY_OPTIONS = {
    "model.backbone.model_kwargs": dict(
        widths=(8, 8, 16, 16, 32), depths=(1, 1, 1, 1, 1), head_dim=8
    ),
    "model.decoder.channels": 16,
    "train_dataloader.batch_size": 4,
    "train_dataloader.dataset.num_samples": 16,
    "train_dataloader.dataset.image_size": (32, 64),
    "val_dataloader.batch_size": 4,
    "val_dataloader.dataset.num_samples": 8,
    "val_dataloader.dataset.image_size": (32, 64),
    "test_dataloader.batch_size": 4,
    "test_dataloader.dataset.num_samples": 8,
    "test_dataloader.dataset.image_size": (32, 64),
    "train_cfg.max_iters": 4,
    "train_cfg.val_interval": 4,
    "default_hooks.checkpoint.interval": 2,
    "default_hooks.logger.interval": 2,
    "param_scheduler": [dict(type="ConstantLR", factor=1.0, by_epoch=False)],
}


@pytest.fixture(autouse=True)
def _single_thread():
    # Two xdist workers share two cores; one thread each avoids oversubscription.
    torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg(tmp_path):
    """The quickstart config shrunk to toy size, with its work dir in tmp_path."""
    from vision_mtl.apis import load_config

    return load_config(QUICKSTART, dict(TINY_OPTIONS), work_dir=str(tmp_path / "work"))


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module so tests call its ``main(argv)``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
