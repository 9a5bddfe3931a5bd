"""Shared fixtures: tiny versions of the real configs (litgpt style: shrink, don't invent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (
    ROOT / "configs/quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py"
)

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

# Real timm backbones at toy size: name, out_indices, model kwargs (inputs 32x48 for the ViT,
# 32x64 otherwise).
TINY_BACKBONES = {
    "vit": (
        "vit_tiny_patch16_224",
        [0, 1],
        dict(
            img_size=(32, 48),
            embed_dim=32,
            depth=2,
            num_heads=2,
            patch_size=8,
            dynamic_img_size=True,
        ),
    ),
    "swin": (
        "swin_tiny_patch4_window7_224",
        None,
        dict(
            img_size=(32, 64),
            window_size=2,
            embed_dim=16,
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 2, 2),
        ),
    ),
    "cnn": ("resnet18", [1, 2, 3, 4], {}),
}


#: input sizes of the tiny backbones
TINY_SIZES = dict(vit=(32, 48), swin=(32, 64), cnn=(32, 64))


def tiny_slimmable(kind: str = "vit"):
    """A tiny multitask model (semseg with 5 classes, depth, normals; baseline decoder of 16
    channels) on a TINY_BACKBONES backbone, seeded, converted by ``make_model_slimmable``."""
    from vision_mtl.models import MultiTaskModel
    from vision_mtl.models.slimmable import make_model_slimmable

    name, indices, kwargs = TINY_BACKBONES[kind]
    torch.manual_seed(0)
    backbone = dict(type="TimmBackbone", model_name=name, out_indices=indices, model_kwargs=kwargs)
    model = MultiTaskModel(
        backbone=backbone,
        decoder=dict(type="BaselineDecoder", channels=16),
        tasks=dict(semseg=dict(num_classes=5), depth={}, normals={}),
    )
    return make_model_slimmable(model)


def tiny_input(kind: str = "vit") -> torch.Tensor:
    """A seeded batch of two images at the tiny backbone's size."""
    return torch.randn(2, 3, *TINY_SIZES[kind], generator=torch.Generator().manual_seed(1))


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


def assert_onnx_parity(module, inputs, names, path, labels):
    """Export ``module`` at opset 17; it must pass the TensorRT check and match in ONNX Runtime.

    ``module`` returns one tensor per entry of ``labels``; each must agree within 1e-4. Returns
    the exported graph for further checks.
    """
    import onnx
    import onnxruntime as ort

    from vision_mtl.export import check_graph

    module = module.eval()
    with torch.no_grad():
        expected = module(*inputs)
    torch.onnx.export(module, inputs, str(path), input_names=names, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    given = dict(zip(names, inputs, strict=True))  # the export drops inputs never read
    got = session.run(None, {i.name: given[i.name].numpy() for i in session.get_inputs()})
    graph = onnx.load(str(path))
    assert check_graph(graph) == []
    for label, mine, theirs in zip(labels, got, expected, strict=True):
        assert abs(mine - theirs.numpy()).max() <= 1e-4, label
    return graph


def assert_decoder_exports(decoder, feats, tasks, path) -> None:
    """Export ``decoder`` alone at opset 17 and check it as the model export does.

    The graph must match PyTorch in ONNX Runtime within 1e-4 per task, hold no data-dependent
    control flow, and pass the TensorRT check (operators, resize modes).
    """

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, *levels):
            return tuple(self.decoder(list(levels)).features[t] for t in tasks)

    names = [f"level{i}" for i in range(len(feats))]
    graph = assert_onnx_parity(Wrapper(), tuple(feats), names, path, tasks)
    assert not {n.op_type for n in graph.graph.node} & {"Loop", "If"}


def run_schedulers(schedulers: list, iters: int) -> list[float]:
    """Build ``schedulers`` with mmengine on a real AdamW and step a training run of ``iters``.

    Returns the learning rate of every iteration (what the Runner's ParamSchedulerHook does:
    ``optimizer.step()`` then every scheduler's ``step()``).
    """
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    weight = torch.nn.Parameter(torch.ones(1))
    wrapper = OptimWrapper(torch.optim.AdamW([weight], lr=1e-3))
    built = [
        PARAM_SCHEDULERS.build(
            dict(s, end=s.get("end", iters)), default_args=dict(optimizer=wrapper)
        )
        for s in schedulers
    ]
    lrs = []
    for _ in range(iters):
        lrs.append(wrapper.get_lr()["lr"][0])
        weight.grad = torch.ones(1)
        wrapper.step()
        for scheduler in built:
            scheduler.step()
    return lrs


def torchrun_train(config, work, *extra):
    """``tools/train.py CONFIG --launcher pytorch`` on two torchrun processes (gloo on the CPU),
    one thread each; the finished process (its return code and output)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0",
        str(ROOT / "tools/train.py"), str(config), "--launcher", "pytorch", "--work-dir", str(work),
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
