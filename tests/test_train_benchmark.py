"""tools/benchmark.py --train: a real Runner iteration against a bare loop, and the data speed."""

from __future__ import annotations

import json

import torch
from conftest import QUICKSTART, TINY_OPTIONS, load_tool

from vision_mtl.workflows import train_benchmark


def test_train_benchmark_times_both_loops_and_the_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written outside the temporary work dir
    bare_steps = []
    original = train_benchmark._BareLoop.step
    monkeypatch.setattr(
        train_benchmark._BareLoop,
        "step",
        lambda self: bare_steps.append(1) or original(self),
    )
    out = tmp_path / "train.json"
    options = [f"{k}={v}" for k, v in TINY_OPTIONS.items() if k.startswith(("train_data", "val"))]
    report = load_tool("benchmark").main(
        [str(QUICKSTART), "--train", "--steps", "4", "--block", "2", "--warmup", "1",
         "--data-batches", "2", "--threads", "1", "--out", str(out),
         "--cfg-options", "model.decoder.channels=16", *options]
    )  # fmt: skip
    assert json.loads(out.read_text())["ratio"] == report["ratio"]
    assert report["batch_size"] == 4 and report["threads"] == 1
    assert len(bare_steps) == 1 + 4  # warm-up, then two interleaved blocks of two
    assert 0 < report["bare"]["median_s"] and 0 < report["toolbox"]["median_s"]
    data = report["data"]
    assert data["cold_samples_per_s"] > 0 and data["warm_samples_per_s"] > 0
    assert data["warm_ratio"] == data["warm_samples_per_s"] / data["consumed_samples_per_s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


def test_bare_loop_trains_the_same_model_as_the_toolbox(tiny_cfg):
    """The bare step changes the weights of its own copy only, with the config's optimizer."""
    from vision_mtl.apis.runner import build_train_runner

    runner = build_train_runner(tiny_cfg)
    model = runner.model
    batch = next(iter(runner.train_dataloader))
    loop = train_benchmark._BareLoop(model, batch, tiny_cfg.optim_wrapper, None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop.step()
    assert isinstance(loop.optimizer, torch.optim.AdamW) and loop.max_norm == 10.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    moved = [k for k, v in loop.model.state_dict().items() if not torch.equal(v, before[k])]
    assert moved
