"""MultiMAE checkpoints (ours and official) initialize timm ViTs; RGB-D fine-tuning backbone."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from vision_mtl.datasets.transforms import (
    AddInputModality,
    PackMultiTaskInputs,
    multitask_collate,
)
from vision_mtl.models import MultiTaskModel
from vision_mtl.models.backbones import MultiMAEBackbone, TimmBackbone
from vision_mtl.models.multimae import (
    MultiMAE,
    load_multimae_into_vit,
    multimae_to_timm,
    official_to_ours,
    sincos_2d,
    standardize_depth,
)

H, W, P, D = 32, 48, 8, 32
GRID = (H // P, W // P)
VIT = "vit_tiny_patch16_224"
VIT_KWARGS = dict(
    img_size=(H, W), patch_size=P, embed_dim=D, depth=2, num_heads=2, dynamic_img_size=True
)


def _multimae(embed_dim: int = D, seed: int = 0) -> MultiMAE:
    torch.manual_seed(seed)
    return MultiMAE(
        encoder=dict(
            model_name=VIT,
            model_kwargs=dict(patch_size=P, embed_dim=embed_dim, depth=2, num_heads=2),
        ),
        image_size=(H, W),
        modalities=dict(rgb={}, depth={}, semseg=dict(num_classes=5, class_dim=16)),
        num_visible=20,
        decoder=dict(dim=16, depth=1, num_heads=2),
    )


def _save(tmp_path, model: MultiMAE, name: str = "multimae.pth") -> str:
    path = tmp_path / name
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return str(path)


@pytest.fixture(scope="module")
def ours():
    return _multimae()


# ------------------------------------------------------------------ (a) official key mapping
def _official_vit_b() -> dict:
    """The official release's names and ViT-B/16 shapes; weights on the meta device (no
    memory), position tables real sin-cos (1 × 768 × 14 × 14)."""
    meta = dict(device="meta")
    d, grid = 768, 14
    pos = sincos_2d(d, grid, grid).T.reshape(1, d, grid, grid)
    state = {"global_tokens": torch.zeros(1, 1, d, **meta)}
    for m, channels, kernel in (("rgb", 3, 16), ("depth", 1, 16), ("semseg", 64, 4)):
        state[f"input_adapters.{m}.pos_emb"] = pos.clone()
        state[f"input_adapters.{m}.proj.weight"] = torch.zeros(d, channels, kernel, kernel, **meta)
        state[f"input_adapters.{m}.proj.bias"] = torch.zeros(d, **meta)
    state["input_adapters.semseg.class_emb.weight"] = torch.zeros(133, 64, **meta)
    for i in range(12):
        for name, shape in (
            ("norm1.weight", (d,)),
            ("norm1.bias", (d,)),
            ("attn.qkv.weight", (3 * d, d)),
            ("attn.qkv.bias", (3 * d,)),
            ("attn.proj.weight", (d, d)),
            ("attn.proj.bias", (d,)),
            ("norm2.weight", (d,)),
            ("norm2.bias", (d,)),
            ("mlp.fc1.weight", (4 * d, d)),
            ("mlp.fc1.bias", (4 * d,)),
            ("mlp.fc2.weight", (d, 4 * d)),
            ("mlp.fc2.bias", (d,)),
        ):
            state[f"encoder.{i}.{name}"] = torch.zeros(*shape, **meta)
    for m in ("rgb", "depth", "semseg"):  # a few output-adapter keys (shapes do not matter)
        state[f"output_adapters.{m}.decoder.0.norm1.weight"] = torch.zeros(256, **meta)
        state[f"output_adapters.{m}.mask_token"] = torch.zeros(1, 1, 256, **meta)
    return {"model": state}


def test_official_vit_b_maps_onto_ours_and_timm():
    official = _official_vit_b()
    mapped, unused = official_to_ours(official)
    assert unused == sorted(k for k in official["model"] if k.startswith("output_adapters."))
    assert mapped["adapters.semseg.class_embed.weight"].shape == (134, 64)
    for m in ("rgb", "depth", "semseg"):
        assert mapped[f"adapters.{m}.modality_embed"].shape == (1, 1, 768)

    with torch.device("meta"):
        model = MultiMAE(
            encoder=dict(model_name="vit_base_patch16_224"),
            image_size=224,
            modalities=dict(rgb={}, depth={}, semseg=dict(num_classes=133)),
            num_visible=98,
        )
        vit = timm.create_model("vit_base_patch16_224", num_classes=0)
    ours = model.state_dict()
    assert set(mapped) <= set(ours)
    for key, value in mapped.items():
        assert value.shape == ours[key].shape, key
    left = {k.split(".")[0] for k in set(ours) - set(mapped)}
    assert left == {"norm", "decoders"}  # documented: no final norm, other decoders

    timm_state = multimae_to_timm(mapped, (14, 14))
    own = vit.state_dict()
    assert set(own) - set(timm_state) == {"norm.weight", "norm.bias"}
    assert set(timm_state) <= set(own)
    for key, value in timm_state.items():
        assert value.shape == own[key].shape, key


def _official_from_ours(model: MultiMAE, pos: torch.Tensor | None = None) -> dict:
    """Our tiny MultiMAE re-spelled with the official names (zero modality embeddings)."""
    s = model.state_dict()
    table = sincos_2d(D, *GRID).T.reshape(1, D, *GRID) if pos is None else pos
    out = {"global_tokens": s["global_token.token"]}
    for m in ("rgb", "depth"):
        out[f"input_adapters.{m}.proj.weight"] = s[f"adapters.{m}.proj.weight"]
        out[f"input_adapters.{m}.proj.bias"] = s[f"adapters.{m}.proj.bias"]
        out[f"input_adapters.{m}.pos_emb"] = table
    for key, value in s.items():
        if key.startswith("blocks."):
            out["encoder." + key[len("blocks.") :]] = value
    out["output_adapters.rgb.out_proj.weight"] = torch.zeros(3, 3)
    # the official training script also pickles its argparse namespace
    return {"model": out, "epoch": 3, "args": argparse.Namespace(model="multivit_tiny")}


def test_official_file_initializes_timm_backbone(tmp_path, ours):
    path = tmp_path / "official.pth"
    torch.save(_official_from_ours(ours), path)
    backbone = TimmBackbone(VIT, [0, 1], pretrained=str(path), model_kwargs=VIT_KWARGS)
    vit = backbone.model
    torch.testing.assert_close(vit.blocks[1].attn.qkv.weight, ours.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(vit.cls_token, ours.global_token.token)
    torch.testing.assert_close(vit.patch_embed.proj.weight, ours.adapters["rgb"].proj.weight)
    # sin-cos table at the pretraining grid: resampling is the identity
    torch.testing.assert_close(vit.pos_embed[0, 1:], sincos_2d(D, *GRID), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ (b) position resampling
def test_official_learned_positions_resample_to_non_square_grid(ours):
    torch.manual_seed(1)
    table = torch.randn(1, D, 14, 14)
    state = _official_from_ours(ours, pos=table)
    vit = timm.create_model(VIT, num_classes=0, **VIT_KWARGS)
    report = load_multimae_into_vit(vit, state)
    assert report["kind"] == "official"
    assert "input_adapters.rgb.pos_emb" in report["unused"]  # ours cannot hold a learned table
    assert report["kept"] == ["norm.bias", "norm.weight"]  # no final norm in the official encoder
    expected = F.interpolate(table, size=GRID, mode="bicubic", align_corners=False)
    assert vit.pos_embed.shape == (1, 1 + GRID[0] * GRID[1], D)
    torch.testing.assert_close(vit.pos_embed[0, 1:], expected.flatten(2)[0].T)
    assert torch.all(vit.pos_embed[0, 0] == 0)


def test_ours_positions_are_exact_at_any_grid(ours):
    vit = timm.create_model(VIT, num_classes=0, **dict(VIT_KWARGS, img_size=(40, 24)))
    load_multimae_into_vit(vit, ours.state_dict())
    embed = ours.adapters["rgb"].modality_embed[0]
    torch.testing.assert_close(vit.pos_embed[0, 1:], sincos_2d(D, 5, 3) + embed)
    # at the pretraining grid it is exactly encoder_state_dict's table
    same = timm.create_model(VIT, num_classes=0, **VIT_KWARGS)
    load_multimae_into_vit(same, ours.state_dict())
    torch.testing.assert_close(same.pos_embed, ours.encoder_state_dict()["pos_embed"])


# ------------------------------------------------------------------ (c) ours → TimmBackbone
def test_our_checkpoint_initializes_timm_backbone_strictly(tmp_path, ours):
    path = _save(tmp_path, ours)
    backbone = TimmBackbone(VIT, [0, 1], pretrained=path, model_kwargs=VIT_KWARGS)
    vit = backbone.model
    for mine, theirs in zip(vit.blocks, ours.blocks):
        for (k, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
            torch.testing.assert_close(a, b, msg=k)
    torch.testing.assert_close(vit.patch_embed.proj.bias, ours.adapters["rgb"].proj.bias)
    assert isinstance(vit.norm, torch.nn.Identity)  # pruned after loading
    feats = backbone(torch.randn(1, 3, 40, 56))
    assert [f.shape for f in feats] == [(1, D, 5, 7)] * 2


def test_wrong_checkpoints_name_file_and_keys(tmp_path):
    wide = _save(tmp_path, _multimae(embed_dim=64), "wide.pth")
    with pytest.raises(ValueError) as err:
        TimmBackbone(VIT, [0, 1], pretrained=wide, model_kwargs=VIT_KWARGS)
    text = str(err.value)
    assert "wide.pth" in text and "blocks.0.attn.qkv.weight" in text and "(192, 64)" in text

    resnet = tmp_path / "resnet.pth"
    torch.save(dict(state_dict=timm.create_model("resnet18").state_dict(), meta={}), resnet)
    vit = timm.create_model(VIT, num_classes=0, **VIT_KWARGS)
    with pytest.raises(ValueError, match=r"resnet\.pth is not a MultiMAE checkpoint"):
        load_multimae_into_vit(vit, str(resnet))
    # Not a MultiMAE file: timm's own (non-strict) loading, whose shape errors name the file.
    plain = tmp_path / "vit64.pth"
    torch.save(timm.create_model(VIT, **dict(VIT_KWARGS, embed_dim=64)).state_dict(), plain)
    with pytest.raises(ValueError, match=r"(?s)vit64\.pth' do not fit .*size mismatch"):
        TimmBackbone(VIT, [0, 1], pretrained=str(plain), model_kwargs=VIT_KWARGS)


# ------------------------------------------------------------------ (d) RGB-D fine-tuning
def _samples(n: int = 2, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        depth = rng.uniform(0.5, 5.0, (H, W)).astype(np.float32)
        depth[:4, :6] = 0  # invalid
        out.append(
            dict(
                image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                depth=depth,
                semseg=rng.integers(0, 5, (H, W)).astype(np.int64),
                meta=dict(name=f"s{i}"),
            )
        )
    return out


def _batch(model, with_depth: bool = True) -> dict:
    add, pack = AddInputModality("depth"), PackMultiTaskInputs()
    packed = [pack(add(s) if with_depth else s) for s in _samples()]
    return model.data_preprocessor(multitask_collate(packed), True)


def _rgbd_model(backbone: dict) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(
        backbone=backbone,
        decoder=dict(type="BaselineDecoder", channels=16),
        tasks=dict(semseg=dict(num_classes=5), depth={}),
    )


def test_rgbd_model_loss_and_predict_with_multimae_depth_adapter(tmp_path, ours):
    path = _save(tmp_path, ours)
    model = _rgbd_model(
        dict(
            type="MultiMAEBackbone",
            model_name=VIT,
            out_indices=[0, 1],
            pretrained=path,
            model_kwargs=VIT_KWARGS,
        )
    )
    backbone = model.backbone
    torch.testing.assert_close(backbone.depth_proj.weight, ours.adapters["depth"].proj.weight)
    torch.testing.assert_close(backbone.depth_proj.bias, ours.adapters["depth"].proj.bias)
    rgb_embed, depth_embed = (ours.adapters[m].modality_embed for m in ("rgb", "depth"))
    torch.testing.assert_close(backbone.depth_embed, depth_embed - rgb_embed)

    data = _batch(model)
    inputs = data["inputs"]
    assert inputs.shape == (2, 4, H, W)
    raw = torch.stack([torch.from_numpy(s["depth"])[None] for s in _samples()])
    torch.testing.assert_close(inputs[:, 3:], standardize_depth(raw)[0])

    losses = model(**data, mode="loss")
    assert {"loss_semseg", "loss_depth"} <= set(losses)
    sum(losses.values()).backward()
    assert backbone.depth_proj.weight.grad is not None
    model.eval()
    results = model(**data, mode="predict")
    assert results[0]["pred"]["semseg"].shape == (H, W)

    # The backbone computes what our MultiMAE's encoder computes on all RGB + depth tokens.
    ours.eval()
    with torch.no_grad():
        rgb_tokens = ours.adapters["rgb"](inputs[:, :3])
        depth_tokens = ours.adapters["depth"](inputs[:, 3:])
        seq = torch.cat([ours.global_token(2), rgb_tokens, depth_tokens], dim=1)
        expected = ours.blocks(ours.norm_pre(seq))[:, 1 : 1 + GRID[0] * GRID[1]]
        got = backbone(inputs)[-1]
    torch.testing.assert_close(got.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-4)

    with pytest.raises(ValueError, match="B×4×H×W.*cannot be exported to ONNX"):
        backbone(inputs[:, :3])


def test_rgb_only_configs_unchanged(tmp_path, ours):
    plain = _rgbd_model(
        dict(type="TimmBackbone", model_name=VIT, out_indices=[0, 1], model_kwargs=VIT_KWARGS)
    )
    data = _batch(plain, with_depth=False)
    assert data["inputs"].shape == (2, 3, H, W)
    assert set(plain(**data, mode="loss")) == {"loss_semseg", "loss_depth"}

    rgb_only = _rgbd_model(
        dict(
            type="MultiMAEBackbone",
            model_name=VIT,
            out_indices=[0, 1],
            model_kwargs=VIT_KWARGS,
            in_modalities=("rgb",),
        )
    )
    assert not hasattr(rgb_only.backbone, "depth_proj")
    plain.eval(), rgb_only.eval()
    rgb_only.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(data["inputs"]), rgb_only(data["inputs"]))


def test_multimae_without_depth_adapter_is_refused_for_rgbd(tmp_path):
    torch.manual_seed(0)
    rgb_only = MultiMAE(
        encoder=dict(
            model_name=VIT, model_kwargs=dict(patch_size=P, embed_dim=D, depth=2, num_heads=2)
        ),
        image_size=(H, W),
        modalities=["rgb"],
        num_visible=8,
        decoder=dict(dim=16, depth=1, num_heads=2),
    )
    path = _save(tmp_path, rgb_only, "rgb_only.pth")
    with pytest.raises(ValueError, match=r"rgb_only\.pth has no depth input adapter"):
        MultiMAEBackbone(VIT, [0, 1], pretrained=path, model_kwargs=VIT_KWARGS)


def test_onnx_export_rgb_only_works_and_rgbd_is_refused(tmp_path, ours):
    from vision_mtl.export.onnx_export import export_onnx

    path = _save(tmp_path, ours)
    backbone = dict(model_name=VIT, out_indices=[0, 1], pretrained=path, model_kwargs=VIT_KWARGS)
    rgb = _rgbd_model(dict(backbone, type="TimmBackbone"))
    (tmp_path / "rgb").mkdir()
    (tmp_path / "rgbd").mkdir()
    exported = export_onnx(rgb, tmp_path / "rgb", canvas=(H, W))
    assert exported.onnx_path.is_file()
    rgbd = _rgbd_model(dict(backbone, type="MultiMAEBackbone"))
    with pytest.raises(ValueError, match="cannot be exported to ONNX"):
        export_onnx(rgbd, tmp_path / "rgbd", canvas=(H, W))
