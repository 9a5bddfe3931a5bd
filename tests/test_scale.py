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


def test_train_step_reads_two_values_from_the_device(tiny_cfg, monkeypatch):
    """One transfer for every logged loss (the non-finite check reads it) and one for the
    gradient norm (the finite-gradient check and clipping): no per-task synchronization."""
    from vision_mtl.apis.runner import build_train_runner

    runner = build_train_runner(tiny_cfg)
    model = runner.model
    optim = runner.build_optim_wrapper(runner.cfg.optim_wrapper)
    batch = next(iter(runner.train_dataloader))
    model.train_step(batch, optim)  # warm-up (lazy initialization)
    reads, paused = [], []
    step = optim.optimizer.step

    def optimizer_step(*args, **kwargs):  # torch's Adam reads its step counters, kept on the host
        paused.append(True)
        try:
            return step(*args, **kwargs)
        finally:
            paused.pop()

    monkeypatch.setattr(optim.optimizer, "step", optimizer_step)
    for name in ("item", "tolist", "__float__", "__bool__", "__int__", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if not paused:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    log_vars = model.train_step(batch, optim)
    monkeypatch.undo()
    assert sorted(reads) == ["__float__", "tolist"], reads
    assert all(isinstance(v, float) for v in log_vars.values())
    assert {"loss", "loss_semseg", "loss_depth", "loss_normals", "loss_edge"} <= set(log_vars)
