"""Gradient accumulation and SyncBN settings: honoured where they work, refused where they cannot."""

from __future__ import annotations

import pytest
import torch
from conftest import load_tool

from vision_mtl.apis.runner import check_sync_bn
from vision_mtl.models.builder import build_model
from vision_mtl.utils import read_checkpoint


def test_accumulation_steps_the_optimizer_every_n_iterations(tiny_cfg, tmp_path):
    """accumulative_counts=2: iteration 1 leaves the weights as they were, 4 iterations make 2
    optimizer steps."""
    torch.manual_seed(0)
    initial = build_model(tiny_cfg.model).state_dict()
    start = tmp_path / "initial.pth"
    torch.save(dict(meta={}, state_dict=initial), start)
    tiny_cfg.load_from = str(start)
    tiny_cfg.optim_wrapper.accumulative_counts = 2
    tiny_cfg.default_hooks.checkpoint.interval = 1
    tiny_cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    config = tmp_path / "tiny_accumulate.py"
    tiny_cfg.dump(str(config))
    work = tmp_path / "work"
    load_tool("train").main([str(config), "--work-dir", str(work)])

    first = read_checkpoint(work / "iter_1.pth")
    params = [k for k, _ in build_model(tiny_cfg.model).named_parameters()]
    assert all(torch.equal(first["state_dict"][k], initial[k]) for k in params)
    second = read_checkpoint(work / "iter_2.pth")
    assert any(not torch.equal(second["state_dict"][k], initial[k]) for k in params)
    steps = {
        float(s["step"])
        for s in read_checkpoint(work / "iter_4.pth")["optimizer"]["state"].values()
    }
    assert steps == {2.0}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_sync_bn_is_refused_on_cpu_before_anything_is_built(tiny_cfg):
    tiny_cfg.sync_bn = "torch"
    with pytest.raises(ValueError, match="SyncBatchNorm runs on CUDA devices only"):
        check_sync_bn(tiny_cfg, "pytorch")
    check_sync_bn(tiny_cfg, "none")  # a single process: no effect, said in the log
    tiny_cfg.sync_bn = "apex"
    with pytest.raises(ValueError, match="sync_bn must be 'torch'"):
        check_sync_bn(tiny_cfg, "none")
