"""MultiMAE pretraining model: exact visible budget, masked-only losses, export to a timm ViT."""

from __future__ import annotations

import pytest
import timm
import torch

from vision_mtl.models.multimae import (
    MultiMAE,
    dirichlet_masks,
    patchify,
    resample_pos_embed,
    rgb_loss,
    semseg_loss,
    sincos_2d,
    split_budget,
    standardize_depth,
)
from vision_mtl.models.multimae.losses import depth_loss
from vision_mtl.models.multimae.output_adapters import OutputAdapter
from vision_mtl.registry import MODELS

H, W, P = 32, 48, 8
GRID = (H // P, W // P)
N = GRID[0] * GRID[1]  # 24 tokens per modality
ENCODER = dict(
    model_name="vit_tiny_patch16_224",
    model_kwargs=dict(patch_size=P, embed_dim=32, depth=2, num_heads=2),
)


def _config(**overrides) -> dict:
    cfg = dict(
        type="MultiMAE",
        encoder=ENCODER,
        image_size=(H, W),
        modalities=dict(rgb=dict(), depth=dict(), semseg=dict(num_classes=7, class_dim=16)),
        num_visible=20,
        decoder=dict(dim=32, depth=2, num_heads=2),
    )
    cfg.update(overrides)
    return cfg


def _batch(batch_size: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, H, W, generator=g)
    depth = torch.rand(batch_size, 1, H, W, generator=g) + 0.5
    depth[:, :, :3, :5] = 0  # invalid pixels
    semseg = torch.randint(0, 7, (batch_size, H, W), generator=g)
    semseg[:, -4:, :] = 255
    return inputs, dict(depth=depth, semseg=semseg, normals=torch.zeros(batch_size, 3, H, W))


# ---------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("alpha", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("sample_subsets", [False, True])
def test_visible_budget_is_exact(alpha, sample_subsets):
    tokens = dict(rgb=24, depth=6, semseg=40)
    for draw in range(200):
        g = torch.Generator().manual_seed(draw)
        budget = 1 + draw % 60
        masks = dirichlet_masks(tokens, budget, alpha, g, 3, sample_subsets=sample_subsets)
        for b in range(3):
            total = 0
            for name, n in tokens.items():
                mm = masks[name]
                vis = mm.visible[b]
                assert mm.mask.shape == (3, n)
                assert len(vis) == len(set(vis.tolist())) == int((~mm.mask[b]).sum())
                assert vis.numel() == 0 or (0 <= int(vis.min()) and int(vis.max()) < n)
                assert torch.equal(torch.nonzero(~mm.mask[b]).flatten(), vis)
                total += len(vis)
            assert total == budget


def test_split_budget_redistributes_overflow():
    import numpy as np

    counts = split_budget(np.array([0.98, 0.01, 0.01]), 30, np.array([10, 50, 50]))
    assert counts.tolist()[0] == 10 and counts.sum() == 30 and (counts <= [10, 50, 50]).all()
    counts = split_budget(np.array([1.0, 0.0, 0.0]), 12, np.array([5, 4, 6]))
    assert counts.sum() == 12 and counts[0] == 5 and (counts <= [5, 4, 6]).all()


def test_subsets_fully_mask_some_modalities():
    tokens = dict(rgb=24, depth=24, semseg=24)
    g = torch.Generator().manual_seed(0)
    masks = dirichlet_masks(tokens, 10, 1.0, g, 64, sample_subsets=True)
    fully_masked = sum(int(masks[m].mask.all(dim=1).sum()) for m in tokens)
    assert fully_masked > 0


def test_masks_are_reproducible():
    tokens = dict(rgb=24, depth=24)
    a = dirichlet_masks(tokens, 10, 1.0, torch.Generator().manual_seed(3), 4)
    b = dirichlet_masks(tokens, 10, 1.0, torch.Generator().manual_seed(3), 4)
    assert all(torch.equal(a[m].mask, b[m].mask) for m in tokens)


# ---------------------------------------------------------------------------------- position
def test_sincos_and_resampling_to_non_square_grid():
    table = sincos_2d(32, 4, 6)
    assert table.shape == (24, 32)
    pos = table.T.reshape(1, 32, 4, 6)
    assert torch.equal(resample_pos_embed(pos, (4, 6)), pos)
    # bicubic at scale 1 is the identity as well
    same = torch.nn.functional.interpolate(pos, size=(4, 6), mode="bicubic", align_corners=False)
    assert torch.allclose(same, pos, atol=1e-6)
    out = resample_pos_embed(pos, (7, 3))
    assert out.shape == (1, 32, 7, 3) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------- losses
def _perturb_patch(x: torch.Tensor, index: int, delta: float = 0.5) -> torch.Tensor:
    """Add a ramp ``delta·(1..P²)`` to patch ``index`` (row-major) of a ...×H×W map.

    A ramp, not a constant: a constant shift leaves a per-patch normalized target unchanged.
    """
    r, c = divmod(index, GRID[1])
    out = x.clone()
    ramp = (1 + torch.arange(P * P)).reshape(P, P).to(x.dtype) * delta
    out[..., r * P : (r + 1) * P, c * P : (c + 1) * P] += ramp
    return out


def _mask_with(visible: int, masked: int) -> torch.Tensor:
    mask = torch.rand(1, N, generator=torch.Generator().manual_seed(1)) < 0.5
    mask[0, visible], mask[0, masked] = False, True
    return mask


@pytest.mark.parametrize("norm_pix", [True, False])
def test_rgb_loss_counts_masked_patches_only(norm_pix):
    pred = torch.randn(1, N, P * P * 3)
    image = torch.randn(1, 3, H, W)
    mask = _mask_with(visible=5, masked=6)
    base = rgb_loss(pred, image, mask, P, norm_pix)
    assert torch.equal(rgb_loss(pred, _perturb_patch(image * 1, 5) * 1, mask, P, norm_pix), base)
    bumped = image.clone()
    bumped[..., 6 // GRID[1] * P, (6 % GRID[1]) * P] += 5.0  # one pixel, changes the patch stats
    assert rgb_loss(pred, bumped, mask, P, norm_pix) != base


def test_depth_loss_counts_masked_valid_pixels_only():
    pred = torch.randn(1, N, P * P)
    raw = torch.rand(1, 1, H, W) + 0.5
    raw[..., :3, :5] = 0
    depth, valid = standardize_depth(raw)
    assert depth[valid].abs().sum() > 0 and (depth[~valid] == 0).all()
    mask = _mask_with(visible=7, masked=8)
    base = depth_loss(pred, depth, valid, mask, P)
    assert torch.equal(depth_loss(pred, _perturb_patch(depth, 7), valid, mask, P), base)
    assert depth_loss(pred, _perturb_patch(depth, 8), valid, mask, P) != base
    # an invalid pixel's value is never scored, even in a masked patch
    mask0 = _mask_with(visible=1, masked=0)
    poked = depth.clone()
    poked[..., 0, 0] = 100.0
    assert torch.equal(
        depth_loss(pred, poked, valid, mask0, P), depth_loss(pred, depth, valid, mask0, P)
    )


def test_semseg_loss_counts_masked_labelled_pixels_only():
    pred = torch.randn(1, N, P * P * 7)
    labels = torch.randint(0, 7, (1, H, W))
    mask = _mask_with(visible=9, masked=10)
    base = semseg_loss(pred, labels, mask, P)

    def relabel(index):
        r, c = divmod(index, GRID[1])
        out = labels.clone()
        out[..., r * P : (r + 1) * P, c * P : (c + 1) * P] = (
            out[..., r * P : (r + 1) * P, c * P : (c + 1) * P] + 1
        ) % 7
        return out

    assert torch.equal(semseg_loss(pred, relabel(9), mask, P), base)
    assert semseg_loss(pred, relabel(10), mask, P) != base
    ignored = labels.clone()
    ignored[..., :P, :P] = 255
    assert torch.isfinite(semseg_loss(pred, ignored, mask, P))


def test_model_losses_ignore_visible_targets():
    """Through the model: fixed predictions, a visible patch's target changes nothing."""
    model = MODELS.build(_config())
    model.eval()
    inputs, targets = _batch(1)
    with torch.no_grad():
        patches, masks, maps, valid = model.reconstruct(inputs, targets)
    base = model.losses(patches, masks, maps, valid)
    for m in model.modalities:
        vis = int(masks[m].visible[0][0]) if len(masks[m].visible[0]) else None
        hidden = int(torch.nonzero(masks[m].mask[0])[0])
        for index, same in ((vis, True), (hidden, False)):
            if index is None:
                continue
            changed = dict(maps)
            if m == "semseg":
                bumped = _perturb_patch(maps[m], index, 1)  # only this patch, 255 kept elsewhere
                changed[m] = torch.where(bumped != maps[m], bumped % 7, maps[m])
            else:
                changed[m] = _perturb_patch(maps[m], index)
            value = model.losses(patches, masks, changed, valid)[f"loss_{m}"]
            assert torch.equal(value, base[f"loss_{m}"]) == same, (m, index)


# ---------------------------------------------------------------------------------- model
def test_forward_backward_reaches_encoder_and_adapters():
    model = MODELS.build(_config())
    model.train()
    inputs, targets = _batch()
    losses = model(inputs, targets, mode="loss")
    assert set(losses) == {"loss_rgb", "loss_depth", "loss_semseg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    groups = dict(
        blocks=model.blocks,
        norm=model.norm,
        global_token=model.global_token,
        **{f"in_{m}": a for m, a in model.adapters.items()},
        **{f"out_{m}": d for m, d in model.decoders.items()},
    )
    for name, module in groups.items():
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_training_masks_follow_the_message_hub_iteration():
    from mmengine.logging import MessageHub

    model = MODELS.build(_config())
    model.train()
    hub = MessageHub.get_current_instance()
    draws = []
    for it in (5, 5, 6):
        hub.update_info("iter", it)
        draws.append(dirichlet_masks(dict(a=24), 5, 1.0, model._generator(), 2)["a"].mask)
    hub.update_info("iter", 0)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_predict_format():
    model = MODELS.build(_config())
    model.eval()
    inputs, targets = _batch()
    meta = [dict(img_shape=(H, W)), dict(img_shape=(24, 40))]
    out = model(inputs, targets, meta, mode="predict")
    assert len(out) == 2 and set(out[0]) == {"pred", "mask", "target"}
    sample = out[0]
    assert sample["pred"]["rgb"].shape == (3, H, W) and sample["pred"]["rgb"].dtype == torch.float32
    assert sample["pred"]["depth"].shape == (1, H, W)
    assert (
        sample["pred"]["semseg"].shape == (H, W) and sample["pred"]["semseg"].dtype == torch.int64
    )
    for m in ("rgb", "depth", "semseg"):
        mask = sample["mask"][m]
        assert mask.shape == (H, W) and mask.dtype == torch.bool
    visible = sum(int((~sample["mask"][m]).sum()) for m in sample["mask"]) // (P * P)
    assert visible == model.num_visible
    assert torch.equal(sample["target"]["rgb"], inputs[0])
    assert torch.equal(sample["target"]["semseg"], targets["semseg"][0])
    assert out[1]["pred"]["rgb"].shape == (3, 24, 40)
    # eval masks are fixed: predicting twice gives the same masks
    again = model(inputs, targets, meta, mode="predict")
    assert torch.equal(again[0]["mask"]["depth"], sample["mask"]["depth"])
    tensors = model(inputs, targets, mode="tensor")
    assert tensors["semseg"].shape == (2, 7, H, W)


def test_encoder_state_dict_loads_into_timm_and_matches():
    model = MODELS.build(_config(modalities=dict(rgb=dict()), num_visible=N))
    model.eval()
    state = model.encoder_state_dict()
    vit = timm.create_model(
        ENCODER["model_name"], num_classes=0, img_size=(H, W), **ENCODER["model_kwargs"]
    )
    vit.load_state_dict(state, strict=True)
    assert set(state) == set(vit.state_dict())
    assert state["pos_embed"].shape == vit.pos_embed.shape == (1, 1 + N, 32)
    vit.eval()
    inputs, _ = _batch()
    with torch.no_grad():
        tokens = {"rgb": model.adapters["rgb"](inputs)}
        masks = dirichlet_masks({"rgb": N}, N, 1.0, torch.Generator().manual_seed(0), 2)
        ours = model.encode(tokens, masks)
        theirs = vit.forward_features(inputs)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_registered_and_built_from_models_package():
    import vision_mtl.models as models

    assert models.MultiMAE is MultiMAE


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (dict(num_visible=3 * N + 1), ["num_visible", str(3 * N + 1)]),
        (dict(num_visible=0), ["num_visible", "0"]),
        (dict(modalities=dict(rgb=dict(), flow=dict())), ["modalities", "'flow'"]),
        (dict(image_size=(30, 48)), ["image_size", "(30, 48)"]),
        (dict(loss_weights=dict(normals=1.0)), ["loss_weights", "'normals'"]),
        (dict(alpha=0.0), ["alpha", "0.0"]),
        (dict(decoder=dict(dim=32, width=3)), ["decoder", "'width'"]),
        (
            dict(encoder=dict(ENCODER, model_kwargs=dict(ENCODER["model_kwargs"], img_size=64))),
            ["img_size", "64"],
        ),
    ],
)
def test_bad_config_values_raise(overrides, words):
    with pytest.raises(ValueError) as info:
        MODELS.build(_config(**overrides))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_semseg_needs_num_classes_and_patch_multiple_of_four():
    with pytest.raises(ValueError, match="num_classes"):
        MODELS.build(_config(modalities=dict(semseg=dict())))
    odd = dict(ENCODER, model_kwargs=dict(ENCODER["model_kwargs"], patch_size=6))
    with pytest.raises(ValueError, match="patch_size"):
        MODELS.build(_config(encoder=odd, image_size=(36, 48)))


def test_patchify_layout():
    x = torch.arange(2 * 3 * H * W, dtype=torch.float32).reshape(2, 3, H, W)
    patches = patchify(x, P)
    assert patches.shape == (2, N, P * P * 3)
    assert torch.equal(patches[0, 1, :3], x[0, :, 0, P])  # patch 1 starts at column P


def test_train_step_on_synthscenes_batch():
    """The multitask pipeline's batch (semseg, depth, normals, edge) trains the model."""
    from mmengine.optim import OptimWrapper

    from vision_mtl.datasets.synthscenes import SynthScenesDataset
    from vision_mtl.datasets.transforms import multitask_collate

    data = SynthScenesDataset(
        split="train",
        num_samples=2,
        tasks="nyud",
        image_size=(H, W),
        pipeline=[dict(type="PackMultiTaskInputs")],
    )
    batch = multitask_collate([data[0], data[1]])
    model = MODELS.build(
        _config(data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=P))
    )
    model.train()
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    log = model.train_step(batch, wrapper)
    assert {"loss", "loss_rgb", "loss_depth", "loss_semseg"} <= set(log)
    assert all(torch.isfinite(v) for v in log.values())
    out = model.val_step(batch)
    assert len(out) == 2 and out[0]["pred"]["rgb"].shape == (3, H, W)


def test_encoder_state_dict_initializes_a_timm_backbone():
    """The baseline ViT config's kwargs (dynamic_img_size): a TimmBackbone takes all but norm."""
    from vision_mtl.models.backbones import TimmBackbone

    kwargs = dict(ENCODER["model_kwargs"], img_size=(H, W), dynamic_img_size=True)
    encoder = dict(model_name=ENCODER["model_name"], model_kwargs=kwargs)
    model = MODELS.build(_config(encoder=encoder, modalities=["rgb"], num_visible=N))
    state = model.encoder_state_dict()
    backbone = TimmBackbone(ENCODER["model_name"], out_indices=[0, 1], model_kwargs=kwargs)
    expected = set(backbone.model.state_dict())
    assert expected == {k for k in state if not k.startswith("norm.")}
    backbone.model.load_state_dict({k: state[k] for k in expected}, strict=True)
    features = backbone(torch.randn(1, 3, 2 * H, W))  # another size: timm resamples pos_embed
    assert features[-1].shape == (1, 32, 2 * GRID[0], GRID[1])


def test_context_tokens_carry_their_patch_position_and_modality():
    # Same encoder output, but the depth tokens came from other patches: the RGB decoder must
    # see the difference (attention alone is blind to the order of its context).
    torch.manual_seed(0)
    decoder = OutputAdapter(32, 3, 4, dim=32, depth=1, num_heads=4, modalities=("rgb", "depth"))
    grid = (3, 4)
    encoded = torch.randn(1, 1 + 4 + 4, 32)
    own = torch.randn(1, 12, 32)
    rgb_mask = torch.ones(1, 12, dtype=torch.bool)
    rgb_mask[0, [0, 1, 2, 3]] = False
    depth_a = torch.ones(1, 12, dtype=torch.bool)
    depth_a[0, [4, 5, 6, 7]] = False
    depth_b = torch.ones(1, 12, dtype=torch.bool)
    depth_b[0, [8, 9, 10, 11]] = False
    out_a = decoder(encoded, own, {"rgb": rgb_mask, "depth": depth_a}, grid)
    out_b = decoder(encoded, own, {"rgb": rgb_mask, "depth": depth_b}, grid)
    assert out_a.shape == (1, 12, 4 * 4 * 3)
    assert not torch.allclose(out_a, out_b, atol=1e-4)
    # the same positions under the other modality's embedding also differ
    swapped = decoder(encoded, own, {"rgb": depth_a, "depth": rgb_mask}, grid)
    again = decoder(encoded, own, {"rgb": rgb_mask, "depth": depth_a}, grid)
    assert torch.equal(out_a, again) and not torch.allclose(swapped, out_a, atol=1e-4)
    with pytest.raises(ValueError, match="expects"):
        decoder(encoded, own, {"depth": depth_a, "rgb": rgb_mask}, grid)
