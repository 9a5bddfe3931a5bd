"""FSDP through mmengine's FlexibleRunner: two real gloo processes train a small ViT config,
checkpoint, resume and validate; the checkpoint loads into the plain model and evaluates the same.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import QUICKSTART, TINY_OPTIONS, load_tool, torchrun_train

from vision_mtl.apis import build_train_runner, init_model, load_config
from vision_mtl.engine import register_all_modules
from vision_mtl.models.builder import build_model
from vision_mtl.utils import read_checkpoint

VIT = dict(
    type="TimmBackbone",
    model_name="vit_tiny_patch16_224",
    out_indices=[0, 1],
    model_kwargs=dict(
        img_size=(32, 64), embed_dim=32, depth=2, num_heads=2, patch_size=8, dynamic_img_size=True
    ),
)
# a unit per ViT block, so the test shards more than one FSDP unit
FSDP = dict(
    type="vision_mtl.VisionMTLFSDPStrategy",
    model_wrapper=dict(auto_wrap_policy=dict(type="vision_mtl.block_wrap_policy")),
)


@pytest.fixture
def vit_config(tmp_path):
    """The small ViT config (DDP) and the same with the FSDP strategy switched on."""
    options = dict(TINY_OPTIONS)
    options.update(
        {
            "model.data_preprocessor.size_divisor": 8,
            # a clipping norm every step exceeds: FSDP must clip by the global norm to match DDP
            "optim_wrapper.clip_grad.max_norm": 0.05,
        }
    )
    cfg = load_config(QUICKSTART, options)
    cfg.model.backbone = VIT  # replace, not merge, the EfficientViT settings
    # both runs start from the same weights (the Runner and the FlexibleRunner draw random
    # numbers in different orders before building the model)
    torch.manual_seed(0)
    initial = tmp_path / "initial.pth"
    torch.save(dict(meta={}, state_dict=build_model(cfg.model).state_dict()), initial)
    cfg.load_from = str(initial)
    plain, sharded = tmp_path / "vit_ddp.py", tmp_path / "vit_fsdp.py"
    cfg.dump(str(plain))
    cfg.strategy = FSDP
    cfg.dump(str(sharded))
    return plain, sharded


def _torchrun(config, work, *extra):
    done = torchrun_train(config, work, *extra)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _val_metrics(work) -> dict[str, float]:
    log = sorted(work.glob("*/*.log"))[-1].read_text()
    line = [s for s in log.splitlines() if "Iter(val) [1/1]" in s][-1]
    return {k: float(v) for k, v in re.findall(r"(\w+/\w+): (-?[\d.]+)", line)}


def test_fsdp_train_checkpoint_resume_evaluate(vit_config, tmp_path):
    plain, sharded = vit_config
    fsdp, ddp = tmp_path / "fsdp", tmp_path / "ddp"
    _torchrun(sharded, fsdp, "--cfg-options", "train_cfg.max_iters=2")
    _torchrun(sharded, fsdp, "--resume")
    _torchrun(plain, ddp)  # the same 4 iterations under DDP, uninterrupted
    register_all_modules()

    log = sorted(fsdp.glob("*/*.log"))[-1].read_text()
    assert "Distributed training: True" in log and "resumed epoch: 0, iter: 2" in log
    units, held, total = map(
        int, re.search(r"FSDP: (\d+) units; rank 0 holds (\d+) of the model's (\d+)", log).groups()
    )
    assert units == 3 and 0 < held < total  # the root and one unit per ViT block; sharded
    # full state dicts: every parameter whole, the optimizer state keyed by parameter name
    resumed, reference = read_checkpoint(fsdp / "iter_4.pth"), read_checkpoint(ddp / "iter_4.pth")
    assert resumed["meta"]["iter"] == 4
    assert read_checkpoint(fsdp / "iter_2.pth")["meta"]["iter"] == 2
    assert set(resumed["state_dict"]) == set(reference["state_dict"])
    # 2 + resume + 2 FSDP iterations (clipped by the global norm) equal 4 DDP iterations
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, atol=2e-5, rtol=1e-4)

    # the checkpoint loads strictly into the plain model and evaluates as FSDP validated it
    model = init_model(plain, fsdp / "iter_4.pth", device="cpu")
    assert sum(p.numel() for p in model.parameters()) > 0
    out = tmp_path / "metrics.json"
    load_tool("test").main([str(plain), str(fsdp / "iter_4.pth"), "--out", str(out)])
    evaluated = json.loads(out.read_text())["model"]
    validated = _val_metrics(fsdp)  # the fast boundary mode's keys (_approx) have no twin
    shared = [k for k in validated if k in evaluated]
    assert {"semseg/mIoU", "depth/rmse", "normals/mean"} <= set(shared)
    for key in shared:
        assert evaluated[key] == pytest.approx(validated[key], abs=1e-3), key


def test_fsdp_refuses_single_process_and_sync_bn(vit_config, tmp_path):
    plain, sharded = vit_config
    cfg = load_config(sharded, work_dir=str(tmp_path / "w"))
    with pytest.raises(ValueError, match="FSDP shards the model across processes"):
        build_train_runner(cfg)
    cfg = load_config(plain, work_dir=str(tmp_path / "w"))
    with pytest.raises(ValueError, match="--strategy must be 'fsdp'"):
        build_train_runner(cfg, strategy="deepspeed")


def test_fsdp_strategy_keeps_checkpoints_full():
    from vision_mtl.engine.fsdp import VisionMTLFSDPStrategy

    with pytest.raises(ValueError, match="only 'full' is supported"):
        VisionMTLFSDPStrategy(state_dict_cfg="local")


def test_fsdp_refuses_replicated_shardings_and_loss_scaling(tiny_cfg):
    from vision_mtl.apis.runner import _check_fsdp_precision, set_mixed_precision
    from vision_mtl.engine.fsdp import VisionMTLFSDPStrategy, plain_name

    for sharding in ("NO_SHARD", "HYBRID_SHARD"):
        with pytest.raises(ValueError, match=f"sharding_strategy='{sharding}': supported are"):
            VisionMTLFSDPStrategy(model_wrapper=dict(sharding_strategy=sharding))
    set_mixed_precision(tiny_cfg, "fp16")
    with pytest.raises(ValueError, match="fp16 loss scaling is not supported"):
        _check_fsdp_precision(tiny_cfg)
    tiny_cfg.optim_wrapper.loss_scale = None  # bf16-style: no scaler
    _check_fsdp_precision(tiny_cfg)
    wrapped = "_fsdp_wrapped_module.backbone._checkpoint_wrapped_module.blocks.0.weight"
    assert plain_name(wrapped) == "backbone.blocks.0.weight"


def test_merge_and_cut_of_optimizer_state_round_trip():
    """Shards in rank order merge into the parameter's shape, and cut back into the shards."""
    from vision_mtl.engine.fsdp import _cut_shard, _merge_shards

    full = torch.arange(12.0).reshape(3, 4)
    shards = [full.reshape(-1)[:7], full.reshape(-1)[7:]]
    parts = [dict(step=torch.tensor(3.0), exp_avg=s) for s in shards]
    merged = _merge_shards(parts, (3, 4))
    assert torch.equal(merged["exp_avg"], full) and merged["step"] == 3
    assert torch.equal(_cut_shard(merged, 7, 5)["exp_avg"], shards[1])
    scalar = _merge_shards([dict(exp_avg=torch.tensor([2.0]))], ())
    assert scalar["exp_avg"].shape == ()
    with pytest.raises(ValueError, match="the shards hold 7 values, expected 12"):
        _merge_shards(parts[:1], (3, 4))
