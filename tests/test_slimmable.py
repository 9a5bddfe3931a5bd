"""Slimmable timm backbones: shared storage, exact full width, sliced widths, per-width BN."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import TINY_BACKBONES

from vision_mtl.models.backbones import TimmBackbone
from vision_mtl.models.slimmable import (
    SwitchableBatchNorm2d,
    active_width,
    get_width,
    make_slimmable,
    out_channels_at,
    set_width,
)


def _vit() -> torch.nn.Module:
    name, _, kwargs = TINY_BACKBONES["vit"]
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def _resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=0)


def _vit_input() -> torch.Tensor:
    return torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))


def test_sliced_weights_are_views_of_the_full_parameters():
    vit, resnet = make_slimmable(_vit()), make_slimmable(_resnet())
    fc1, conv, bn = vit.blocks[0].mlp.fc1, resnet.layer1[0].conv1, resnet.layer1[0].bn1
    full = {id(p) for p in (fc1.weight, conv.weight, bn.weight)}
    with active_width(vit, 0.5), active_width(resnet, 0.5):
        assert fc1.sliced_weight().shape == (64, 16)
        assert fc1.sliced_weight().data_ptr() == fc1.weight.data_ptr()
        assert conv.sliced_weight().shape == (32, 32, 3, 3)
        assert conv.sliced_weight().data_ptr() == conv.weight.data_ptr()
        assert fc1.sliced_weight()._base is fc1.weight
    # conversion swapped classes only: the very same parameter objects, no new ones
    assert full == {id(p) for p in (fc1.weight, conv.weight, bn.weight)}
    assert sum(p.numel() for p in vit.parameters()) == sum(p.numel() for p in _vit().parameters())


def test_full_width_equals_unconverted_model():
    name, indices, kwargs = TINY_BACKBONES["vit"]
    torch.manual_seed(0)
    backbone = TimmBackbone(name, out_indices=indices, model_kwargs=kwargs).eval()
    reference = copy.deepcopy(backbone)
    make_slimmable(backbone)
    x = _vit_input()
    with torch.no_grad():
        for ours, theirs in zip(backbone(x), reference(x), strict=True):
            assert torch.equal(ours, theirs)
    resnet = _resnet()
    reference = copy.deepcopy(resnet)
    make_slimmable(resnet)
    x = torch.randn(2, 3, 32, 64)
    assert torch.equal(resnet(x), reference(x))  # train mode: batch statistics
    resnet.eval(), reference.eval()
    assert torch.equal(resnet(x), reference(x))  # eval mode: the full width's running stats


def test_half_width_features_and_manual_linear():
    name, indices, kwargs = TINY_BACKBONES["vit"]
    torch.manual_seed(0)
    backbone = make_slimmable(TimmBackbone(name, out_indices=indices, model_kwargs=kwargs))
    assert out_channels_at(backbone, 0.5) == [16, 16]
    assert backbone.out_channels == [32, 32]  # parameter shapes stay full
    with active_width(backbone, 0.5), torch.no_grad():
        feats = backbone(_vit_input())
        assert [f.shape[1] for f in feats] == out_channels_at(backbone, 0.5)
        fc1 = backbone.model.blocks[0].mlp.fc1
        x = torch.randn(3, 5, 16)
        manual = x @ fc1.weight[:64, :16].T + fc1.bias[:64]
        assert torch.allclose(fc1(x), manual, atol=1e-6)
        qkv = backbone.model.blocks[0].attn.qkv  # one head of 16 in each of q, k, v
        blocks = [
            x @ qkv.weight[i * 32 : i * 32 + 16, :16].T + qkv.bias[i * 32 : i * 32 + 16]
            for i in range(3)
        ]
        assert torch.allclose(qkv(x), torch.cat(blocks, -1), atol=1e-6)
    assert get_width(backbone) == 1.0


def test_every_width_receives_gradients():
    vit = make_slimmable(_vit())
    fc1, qkv = vit.blocks[0].mlp.fc1, vit.blocks[0].attn.qkv
    x = _vit_input()
    with active_width(vit, 0.25):
        vit(x).sum().backward()
    # 0.25: embedding 8, hidden 32, one head of 16 per q/k/v block
    inside = torch.zeros_like(fc1.weight, dtype=torch.bool)
    inside[:32, :8] = True
    assert fc1.weight.grad[inside].abs().sum() > 0
    assert fc1.weight.grad[~inside].abs().sum() == 0
    inside = torch.zeros_like(qkv.weight, dtype=torch.bool)
    for block in range(3):
        inside[block * 32 : block * 32 + 16, :8] = True
    assert qkv.weight.grad[~inside].abs().sum() == 0
    for block in range(3):  # q, k and v each get their own first head
        assert qkv.weight.grad[block * 32 : block * 32 + 16, :8].abs().sum() > 0
    assert vit.pos_embed.grad[..., :8].abs().sum() > 0
    assert vit.pos_embed.grad[..., 8:].abs().sum() == 0
    assert vit.cls_token.grad[..., 8:].abs().sum() == 0
    vit.pos_embed.grad = None
    with active_width(vit, 1.0):
        vit(x).sum().backward()
    assert fc1.weight.grad[32:].abs().sum() > 0 and fc1.weight.grad[:, 8:].abs().sum() > 0
    assert qkv.weight.grad[~inside].abs().sum() > 0
    assert vit.pos_embed.grad[..., 8:].abs().sum() > 0


def test_attention_at_half_width_is_multi_head_with_fewer_heads():
    vit = make_slimmable(_vit())
    attn = vit.blocks[0].attn
    x = torch.randn(2, 7, 16)
    with active_width(vit, 0.5), torch.no_grad():
        assert (attn.num_heads, attn.head_dim, attn.attn_dim) == (1, 16, 16)
        out = attn(x)
        w, b = attn.qkv.weight, attn.qkv.bias
        q, k, v = (x @ w[i * 32 : i * 32 + 16, :16].T + b[i * 32 : i * 32 + 16] for i in range(3))
        heads = torch.softmax(q @ k.transpose(-2, -1) * 16**-0.5, -1) @ v
        manual = F.linear(heads, attn.proj.weight[:16, :16], attn.proj.bias[:16])
    assert out.shape == (2, 7, 16)
    assert torch.allclose(out, manual, atol=1e-5)
    assert (attn.num_heads, attn.attn_dim) == (2, 32)  # restored on leaving the block


def test_resnet_batch_norm_statistics_per_width():
    resnet = make_slimmable(_resnet(), widths=(0.5, 1.0))
    bn = resnet.layer1[0].bn1
    assert isinstance(bn, SwitchableBatchNorm2d)
    before = {w: bn.stats_at(w)[0].clone() for w in (0.5, 1.0)}
    x = torch.randn(2, 3, 32, 64)
    for width in (0.5, 1.0):
        with active_width(resnet, width):
            resnet(x)
    half, full = bn.stats_at(0.5), bn.stats_at(1.0)
    assert half[0].shape == (32,) and full[0].shape == (64,)
    assert not torch.equal(half[0], before[0.5]) and not torch.equal(full[0], before[1.0])
    assert not torch.allclose(half[0], full[0][:32])  # a narrower stem gives other statistics
    assert int(half[2]) == int(full[2]) == 1
    assert "layer1.0.bn1.running_mean_w0500" in resnet.state_dict()
    assert bn.weight.shape == (64,)  # affine parameters shared


def test_width_outside_the_set_is_refused():
    vit = make_slimmable(_vit(), widths=(0.5, 1.0))
    for call in (lambda: set_width(vit, 0.25), lambda: out_channels_at(vit, 0.3)):
        with pytest.raises(ValueError, match=r"width 0\.\d+ is not offered.*\[0\.5, 1\.0\]"):
            call()
    with pytest.raises(ValueError, match="only trained widths"):
        with active_width(vit, 0.75):
            pass
    assert get_width(vit) == 1.0
    with pytest.raises(ValueError, match="already slimmable"):
        make_slimmable(vit)
    with pytest.raises(TypeError, match="VisionTransformer and ResNet"):
        make_slimmable(torch.nn.Linear(2, 2))


def test_width_is_set_through_a_parent_and_copies_are_independent():
    parent = torch.nn.ModuleDict({"backbone": make_slimmable(_vit())})
    twin = copy.deepcopy(parent)
    x = _vit_input()
    assert set_width(parent, 0.5) == 1.0
    assert get_width(parent) == 0.5 and out_channels_at(parent, 0.25) == [8, 8]
    assert parent["backbone"](x).shape == (2, 16)
    assert twin["backbone"](x).shape == (2, 32)  # the copy's hooks slice the copy's tokens
    assert "pos_embed" not in parent["backbone"].__dict__  # shadows live only in _pos_embed


def test_resnet_backbone_levels_and_classifier_outputs_follow_the_width():
    name, indices, kwargs = TINY_BACKBONES["cnn"]
    backbone = make_slimmable(TimmBackbone(name, out_indices=indices, model_kwargs=kwargs))
    with active_width(backbone, 0.25):
        feats = backbone(torch.randn(2, 3, 32, 64))
    assert [f.shape[1] for f in feats] == out_channels_at(backbone, 0.25) == [16, 32, 64, 128]
    vit_name, _, vit_kwargs = TINY_BACKBONES["vit"]
    classifier = make_slimmable(
        timm.create_model(vit_name, pretrained=False, num_classes=5, **vit_kwargs)
    )
    with active_width(classifier, 0.25):
        assert classifier(_vit_input()).shape == (2, 5)  # a classifier keeps its outputs
