"""The timm wrapper reports true channels/strides and loads weights only from local files."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import TINY_BACKBONES

from vision_mtl.models.backbones import TimmBackbone

TINY = TINY_BACKBONES


@pytest.mark.parametrize("kind", sorted(TINY))
def test_reported_channels_and_strides_match_outputs(kind):
    name, indices, kwargs = TINY[kind]
    backbone = TimmBackbone(name, indices, model_kwargs=kwargs)
    h, w = (32, 64) if kind != "vit" else (32, 48)
    feats = backbone(torch.randn(2, 3, h, w))
    assert len(feats) == len(backbone.out_channels) == len(backbone.out_strides)
    for feat, channels, stride in zip(feats, backbone.out_channels, backbone.out_strides):
        assert feat.shape == (2, channels, h // stride, w // stride)
    if kind == "swin":
        assert backbone.out_strides == [4, 8, 16, 32]


def test_vit_accepts_other_sizes_when_dynamic():
    name, indices, kwargs = TINY["vit"]
    backbone = TimmBackbone(name, indices, model_kwargs=kwargs)
    assert backbone(torch.randn(1, 3, 40, 56))[0].shape[-2:] == (5, 7)


def test_bad_out_indices():
    with pytest.raises(ValueError, match="outside the 5 feature levels of 'resnet18'"):
        TimmBackbone("resnet18", [7])


def test_missing_pretrained_file_names_path_and_weight(tmp_path):
    missing = tmp_path / "weights" / "vit_tiny.safetensors"
    with pytest.raises(FileNotFoundError) as err:
        TimmBackbone("vit_tiny_patch16_224", pretrained=str(missing))
    assert str(missing) in str(err.value)
    assert "vit_tiny_patch16_224" in str(err.value) and "Download" in str(err.value)


def test_pretrained_loads_from_local_file(tmp_path):
    kwargs = dict(embed_dim=32, depth=2, num_heads=2)
    source = timm.create_model("vit_tiny_patch16_224", **kwargs)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone(
        "vit_tiny_patch16_224", [0, 1], pretrained=str(path), model_kwargs=kwargs
    )
    torch.testing.assert_close(
        backbone.model.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight
    )
    fresh = TimmBackbone("vit_tiny_patch16_224", [0, 1], model_kwargs=kwargs)
    assert not torch.equal(fresh.model.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)
