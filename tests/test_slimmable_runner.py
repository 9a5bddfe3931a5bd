"""A slimmable model from its config: trained by tools/train.py (one and two processes),
evaluated, recalibrated, and a deployed configuration rebuilt from the slimmable config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY_OPTIONS, load_tool

from vision_mtl.apis import load_config
from vision_mtl.models.builder import build_model
from vision_mtl.models.slimmable import SwitchableBatchNorm2d, static_model
from vision_mtl.models.slimmable.model import configuration
from vision_mtl.models.slimmable.multitask import (
    SlimmableMultiTaskModel,
    recalibrate_batch_norms,
)

CONFIG = ROOT / "configs/slimmable/slimmable_resnet18_1xb8-800_synthscenes-nyud-96x128.py"
OPTIONS = {k: v for k, v in TINY_OPTIONS.items() if not k.startswith("model.backbone")}
HALF = dict(encoder=0.5, decoder=0.5, semseg=0.5, depth=0.5, normals=0.5, edge=0.5)
TINY_HALF = dict(encoder=0.5, decoder=0.5, semseg=0.5, depth=0.5)


@pytest.fixture
def slim_cfg(tmp_path):
    return load_config(CONFIG, dict(OPTIONS), work_dir=str(tmp_path / "work"))


def _tiny_model(**kwargs) -> SlimmableMultiTaskModel:
    torch.manual_seed(0)
    return build_model(
        dict(
            type="SlimmableMultiTaskModel",
            backbone=dict(type="TimmBackbone", model_name="resnet18", out_indices=[1, 2, 3, 4]),
            decoder=dict(type="BaselineDecoder", channels=16),
            tasks=dict(semseg=dict(num_classes=3), depth={}),
            **kwargs,
        )
    )


def test_config_trains_with_the_sandwich_rule_and_reloads_strictly(slim_cfg, tmp_path):
    config = tmp_path / "slim.py"
    slim_cfg.dump(str(config))
    work = Path(slim_cfg.work_dir)
    load_tool("train").main([str(config), "--work-dir", str(work)])
    log = next(work.glob("*/*.log")).read_text()
    for name in ("max", "min", "rand0", "rand1"):
        assert f"sandwich/{name}/loss" in log
    assert "sandwich/min/cikd" in log and "sandwich/rand1/distill" in log
    assert "semseg/mIoU" in log  # validation ran (at the widest configuration)
    model = build_model(slim_cfg.model)
    state = torch.load(work / "iter_4.pth", map_location="cpu")["state_dict"]
    model.load_state_dict(state, strict=True)  # per-width statistics included
    assert any(k.endswith("running_mean_w0250") for k in state)


def test_two_processes_train_the_same_configurations(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0",
        str(ROOT / "tests/ddp_sandwich_worker.py"), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["configurations"] == ranks[1]["configurations"]
    steps = ranks[0]["configurations"]
    assert len(steps) == 3 and all(len(step) == 4 for step in steps)
    # the random configurations change from step to step, and both ranks stay in sync
    assert len({json.dumps(step[2:]) for step in steps}) > 1
    assert ranks[0]["params"] == ranks[1]["params"]


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"model.sandwich: unknown key\(s\) \['num_rand'\]"):
        _tiny_model(sandwich=dict(num_rand=2))
    with pytest.raises(ValueError, match="model.sandwich.cikd_weight must be a number >= 0"):
        _tiny_model(sandwich=dict(cikd_weight=-1))
    with pytest.raises(ValueError, match=r"model.eval_configuration: width 0.3 is not offered"):
        _tiny_model(eval_configuration=dict(encoder=0.3))


def test_predict_runs_the_eval_configuration():
    model = _tiny_model(eval_configuration=dict(encoder=0.5, decoder=0.5)).eval()
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad(), configuration(model, dict(encoder=0.5, decoder=0.5)):
        expected = model(x, mode="tensor")["depth"]
    with torch.no_grad(), configuration(model, dict(encoder=1.0, decoder=1.0)):
        pred = model(x, {}, [dict(ori_shape=(32, 64))], mode="predict")[0]["pred"]["depth"]
        assert model.decoder.slim_config["encoder"] == 1.0  # restored after predict
    assert torch.allclose(pred.squeeze(), expected.squeeze(), atol=1e-6)


def test_recalibration_sets_the_configurations_exact_batch_statistics():
    model = _tiny_model()
    norm = model.decoder.fuse[1]
    seen = []
    handle = norm.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 3, 32, 64, generator=g) for _ in range(3)]
    assert recalibrate_batch_norms(model, TINY_HALF, batches) == 3
    handle.remove()
    assert model.training and model.decoder.slim_config["decoder"] == 1.0  # state restored
    feats = torch.cat(seen)
    assert feats.shape[1] == 8  # the decoder's 16 channels at width 0.5
    mean, var, tracked = norm.stats_at(0.5)
    per_batch = torch.stack([f.mean((0, 2, 3)) for f in seen])
    assert torch.allclose(mean, per_batch.mean(0), atol=1e-5)  # the exact average over batches
    assert int(tracked) == 3 and norm.momentum == 0.1
    full_mean = norm.stats_at(1.0)[0]
    assert torch.equal(full_mean, torch.zeros(16))  # other widths untouched
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batch_norms(model, TINY_HALF, [])
    assert isinstance(norm, SwitchableBatchNorm2d) and var.min() > 0


def test_a_deployed_configuration_builds_from_the_slimmable_config(slim_cfg):
    slim = build_model(slim_cfg.model).eval()
    example = torch.zeros(1, 3, 32, 64)
    plain_cfg = SlimmableMultiTaskModel.plain_config(slim_cfg.model)
    static = static_model(slim, HALF, plain_cfg, example)
    rebuilt = build_model(dict(slim_cfg.model, pruning=static.pruning_record))
    assert type(rebuilt).__name__ == "MultiTaskModel"
    rebuilt.load_state_dict(static.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), configuration(slim, HALF):
        expected = slim(x, mode="tensor")
    with torch.no_grad():
        got = rebuilt.eval()(x, mode="tensor")
    for task in expected:
        assert (got[task] - expected[task]).abs().max() <= 1e-5, task
