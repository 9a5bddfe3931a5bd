"""Mixed precision: ``--amp`` trains on the CPU (bf16 autocast), losses stay fp32, resume works."""

from __future__ import annotations

import pytest
import torch
from conftest import QUICKSTART, TINY_OPTIONS, load_tool

from vision_mtl.apis import load_config
from vision_mtl.apis.runner import set_mixed_precision
from vision_mtl.datasets import multitask_collate
from vision_mtl.models.builder import build_model
from vision_mtl.registry import DATASETS
from vision_mtl.utils import read_checkpoint

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's choice of wrapper")


@CPU_ONLY
@pytest.mark.parametrize(
    ("precision", "dtype", "scale"),
    [("auto", "bfloat16", None), ("bf16", "bfloat16", None), ("fp16", "float16", "dynamic")],
)
def test_cpu_precisions_pick_the_autocast_wrapper(tiny_cfg, precision, dtype, scale):
    set_mixed_precision(tiny_cfg, precision)
    wrapper = tiny_cfg.optim_wrapper
    assert wrapper.type == "vision_mtl.AutocastOptimWrapper"
    assert (wrapper.dtype, wrapper.loss_scale) == (dtype, scale)
    assert wrapper.clip_grad == dict(max_norm=10.0, norm_type=2)  # the config's settings kept


def test_amp_refuses_unknown_precision_and_foreign_wrappers(tiny_cfg):
    with pytest.raises(ValueError, match="--amp must be one of auto, bf16, fp16; got 'int8'"):
        set_mixed_precision(tiny_cfg, "int8")
    tiny_cfg.optim_wrapper.type = "OptimWrapperDict"
    with pytest.raises(ValueError, match="optim_wrapper.type='OptimWrapperDict' is not a plain"):
        set_mixed_precision(tiny_cfg, "auto")


def _capture_loss_inputs(model) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for loss in model.losses.values():
        loss.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    return seen


def test_losses_are_fp32_under_autocast():
    cfg = load_config(QUICKSTART, dict(TINY_OPTIONS))
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    seen = _capture_loss_inputs(model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    data = model.data_preprocessor(multitask_collate([dataset[0], dataset[1]]), True)
    inputs, targets = data["inputs"], data["targets"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        decoded = model.decoder(model.backbone(inputs))
        logits = model(inputs)
        losses = model.loss(inputs, targets)
    assert {v.dtype for v in decoded.features.values()} == {torch.bfloat16}  # ran in bf16
    assert {v.dtype for v in logits.values()} == {torch.float32}  # upsampled in fp32
    assert seen and set(seen) == {torch.float32}  # every loss saw fp32 logits
    assert {v.dtype for v in losses.values()} == {torch.float32}
    with torch.no_grad():
        reference = model.loss(inputs, targets)  # fp32 throughout
    for key, value in losses.items():  # bf16 matrix products, fp32 losses: close, not equal
        assert value.item() == pytest.approx(reference[key].item(), rel=0.05), key


def test_amp_train_and_resume_on_cpu(tiny_cfg, tmp_path):
    """``tools/train.py --amp`` trains in bf16 on the CPU, checkpoints and resumes."""
    config = tmp_path / "tiny_amp.py"
    tiny_cfg.dump(str(config))
    work = tmp_path / "amp"
    train = load_tool("train")
    argv = [str(config), "--work-dir", str(work), "--amp"]
    train.main(argv + ["--cfg-options", "train_cfg.max_iters=2"])
    first = read_checkpoint(work / "iter_2.pth")
    assert first["meta"]["iter"] == 2
    assert "loss_scaler" not in first["optimizer"]  # bf16: no loss scale
    state = first["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    train.main(argv + ["--resume"])
    last = read_checkpoint(work / "iter_4.pth")
    assert last["meta"]["iter"] == 4
    moved = [k for k, v in last["state_dict"].items() if not torch.equal(v, state[k])]
    assert moved  # the resumed run trained


def test_fp16_loss_scale_is_checkpointed(tiny_cfg, tmp_path):
    """fp16 on the CPU runs torch's GradScaler; its scale is saved with the optimizer."""
    config = tmp_path / "tiny_fp16.py"
    tiny_cfg.dump(str(config))
    work = tmp_path / "fp16"
    load_tool("train").main(
        [
            str(config),
            "--work-dir",
            str(work),
            "--amp",
            "fp16",
            "--cfg-options",
            "train_cfg.max_iters=2",
        ]
    )
    scaler = read_checkpoint(work / "iter_2.pth")["optimizer"]["loss_scaler"]
    assert scaler["scale"] > 0


def test_norm_layers_run_in_fp32_under_the_autocast_wrapper():
    """CPU bf16 autocast leaves BatchNorm/LayerNorm to their input's dtype; the wrapper keeps
    them fp32 (as CUDA autocast does) while convolutions still run in bf16."""
    from vision_mtl.engine.optim import AutocastOptimWrapper

    cfg = load_config(QUICKSTART, dict(TINY_OPTIONS))
    model = build_model(cfg.model).train()
    seen: dict[str, set] = {"norm_in": set(), "norm_out": set(), "conv_out": set()}
    for module in model.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(
                lambda _m, args, out: (
                    seen["norm_in"].add(args[0].dtype) or seen["norm_out"].add(out.dtype)
                )
            )
        elif isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _m, _a, out: seen["conv_out"].add(out.dtype))
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        model.backbone(torch.randn(2, 3, 32, 64))
    assert seen["norm_in"] == seen["norm_out"] == {torch.float32}
    assert seen["conv_out"] == {torch.bfloat16}
    plain = build_model(cfg.model).train()  # without the wrapper: autocast's own policy
    seen = {"norm_in": set(), "norm_out": set(), "conv_out": set()}
    for module in plain.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(lambda _m, args, out: seen["norm_in"].add(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain.backbone(torch.randn(2, 3, 32, 64))
    assert seen["norm_in"] == {torch.bfloat16}
