"""Structural reparameterization at export: multi-branch backbones ship folded, proven equal."""

from __future__ import annotations

import onnx
import pytest
import torch
from conftest import QUICKSTART, TINY_OPTIONS, load_tool

from vision_mtl.apis import init_model, load_config
from vision_mtl.export import check_graph
from vision_mtl.export.reparam import FoldError, check_folded, fold_branches, foldable_blocks
from vision_mtl.models import MultiTaskModel

CANVAS = (64, 96)


def _settle(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm the statistics of one batch (as training would, roughly), so the
    eval-mode outputs have a trained model's scale instead of an untrained one's 1e7."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.randn(4, 3, *CANVAS, generator=torch.Generator().manual_seed(1)))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def _settled(model_name: str) -> MultiTaskModel:
    """A seeded model with settled BatchNorm statistics."""
    torch.manual_seed(0)
    return _settle(
        MultiTaskModel(
            backbone=dict(type="TimmBackbone", model_name=model_name),
            decoder=dict(type="BaselineDecoder", channels=16),
            tasks=dict(semseg=dict(num_classes=5), depth={}, normals={}),
        )
    )


@pytest.mark.parametrize("name", ["mobileone_s0", "repvit_m0_9", "fastvit_t8"])
def test_folded_backbone_equals_the_multi_branch_one(name):
    model = _settled(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, blocks = fold_branches(model)
    assert blocks > 0 and folded is not model
    assert sum(1 for _ in folded.modules()) < sum(1 for _ in model.modules())
    assert check_folded(model, folded, CANVAS) <= 1e-4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched


def test_nothing_to_fold_is_left_alone():
    model = _settled("efficientvit_b1")
    assert foldable_blocks(model) == 0 and fold_branches(model) == (model, 0)


def test_a_wrong_fold_is_refused():
    model = _settled("repvit_m0_9")
    folded, _ = fold_branches(model)
    conv = next(m for m in folded.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(1.5)
    with pytest.raises(FoldError, match="differs from the multi-branch one on task"):
        check_folded(model, folded, CANVAS)


def test_export_ships_the_folded_graph(tmp_path):
    """tools/export.py on a RepViT model: the ONNX graph has the folded convolutions only,
    passes the TensorRT check and matches the multi-branch PyTorch model."""
    options = dict(TINY_OPTIONS)
    options.update(
        {
            "model.backbone.model_name": "repvit_m0_9",
            "model.backbone.model_kwargs": {},
            "model.backbone.out_indices": [-4, -3, -2, -1],
        }
    )
    cfg = load_config(QUICKSTART, options, work_dir=str(tmp_path / "work"))
    config = tmp_path / "repvit.py"
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = init_model(config, None, device="cpu")
    _settle(model)
    checkpoint = tmp_path / "seed0.pth"
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    out = tmp_path / "out"
    result = load_tool("export").main([str(config), str(checkpoint), "--out", str(out)])
    assert max(result["max_abs_diff"].values()) <= 1e-4
    assert check_graph(str(out / "model.onnx")) == []
    graph = onnx.load(str(out / "model.onnx")).graph
    convs = sum(node.op_type == "Conv" for node in graph.node)
    branches = sum(isinstance(m, torch.nn.Conv2d) for m in model.backbone.modules())
    decoder = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) - branches
    assert convs - decoder < branches  # fewer backbone convolutions than the branches trained
