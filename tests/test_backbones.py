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


def test_norm_last_normalizes_only_the_last_level_as_invpt():
    name, indices, kwargs = TINY["vit"]
    torch.manual_seed(0)
    plain = TimmBackbone(name, indices, model_kwargs=kwargs)
    normed = TimmBackbone(name, indices, model_kwargs=kwargs, norm_last=True)
    missing = normed.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["model.norm.weight", "model.norm.bias"]  # kept, not pruned
    with torch.no_grad():
        normed.model.norm.weight.uniform_(0.5, 1.5)
        x = torch.randn(1, 3, 32, 48)
        a, b = plain(x), normed(x)
        torch.testing.assert_close(a[0], b[0])
        expected = normed.model.norm(a[1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(b[1], expected)
        assert not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="out_indices end at 0 of 2 blocks"):
        TimmBackbone(name, [0], model_kwargs=kwargs, norm_last=True)
    with pytest.raises(ValueError, match="needs a model with a final LayerNorm"):
        TimmBackbone("resnet18", [-1], norm_last=True)
