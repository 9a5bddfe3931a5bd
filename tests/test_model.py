"""MultiTaskModel, the decoder interface, heads and the data preprocessor."""

from __future__ import annotations

import pytest
import torch

from vision_mtl.models import BaselineDecoder, MultiTaskDataPreprocessor, MultiTaskModel

BACKBONE = dict(
    type="TimmBackbone",
    model_name="vit_tiny_patch16_224",
    out_indices=[0, 1],
    model_kwargs=dict(
        img_size=(32, 48), embed_dim=32, depth=2, num_heads=2, patch_size=8, dynamic_img_size=True
    ),
)
PASCAL = dict(
    semseg=dict(num_classes=7), human_parts=dict(num_classes=4), saliency={}, normals={}, edge={}
)


def make_model(tasks=None, **decoder):
    return MultiTaskModel(
        backbone=BACKBONE,
        decoder=dict(type="BaselineDecoder", channels=16, **decoder),
        tasks=tasks or PASCAL,
        data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=8),
    )


@pytest.mark.parametrize("out_stride", [8, 4, 2])
def test_baseline_decoder_upsamples_to_out_stride(out_stride):
    decoder = BaselineDecoder(
        [32, 16], [8, 16], ["depth", "edge"], channels=8, out_stride=out_stride
    )
    out = decoder([torch.randn(2, 32, 4, 6), torch.randn(2, 16, 2, 3)])
    assert set(out.features) == {"depth", "edge"}
    assert out.features["depth"].shape == (2, 8, 32 // out_stride, 48 // out_stride)
    with pytest.raises(ValueError, match="out_stride 3"):
        BaselineDecoder([8], [8], ["depth"], out_stride=3)


def test_tensor_mode_outputs_per_task_at_input_size():
    model = make_model().eval()
    out = model(torch.randn(2, 3, 32, 48), mode="tensor")
    assert list(out) == ["semseg", "normals", "edge", "saliency", "human_parts"]  # TaskSpec order
    shapes = {t: tuple(v.shape) for t, v in out.items()}
    assert shapes["semseg"] == (2, 7, 32, 48) and shapes["human_parts"] == (2, 4, 32, 48)
    assert shapes["normals"] == (2, 3, 32, 48) and shapes["saliency"] == (2, 2, 32, 48)
    assert shapes["edge"] == (2, 1, 32, 48)


def _batch(sizes):
    inputs = [torch.randint(0, 255, (3, h, w), dtype=torch.uint8) for h, w in sizes]
    targets = dict(
        depth=[torch.rand(1, h, w) + 0.5 for h, w in sizes],
        semseg=[torch.randint(0, 7, (h, w)) for h, w in sizes],
    )
    meta = [dict(name=f"s{i}", ori_shape=(h, w)) for i, (h, w) in enumerate(sizes)]
    return dict(inputs=inputs, targets=targets, meta=meta)


def test_preprocessor_pads_with_task_ignore_values():
    pre = MultiTaskDataPreprocessor(size_divisor=8)
    data = pre(_batch([(30, 40), (20, 45)]))
    assert data["inputs"].shape == (2, 3, 32, 48)
    assert data["targets"]["semseg"][1, 25, 0] == 255  # label padding is ignored
    assert data["targets"]["depth"][1, 0, 25, 0] == 0  # map padding is invalid
    with pytest.raises(ValueError, match="does not fit the canvas 16x16"):
        MultiTaskDataPreprocessor(size=(16, 16))(_batch([(30, 40)]))


def test_predict_crops_to_original_size_and_loss_keys():
    model = make_model(dict(semseg=dict(num_classes=7), depth=dict(loss_weight=2.0)))
    data = model.data_preprocessor(_batch([(30, 40), (20, 45)]), True)
    losses = model(**data, mode="loss")
    assert set(losses) == {"loss_semseg", "loss_depth"}
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without gradient: {unused}"
    model.eval()
    results = model(**data, mode="predict")
    assert results[0]["pred"]["semseg"].shape == (30, 40)
    assert results[1]["pred"]["depth"].shape == (20, 45) and results[1]["gt"]["depth"].shape == (
        20,
        45,
    )
    assert (results[1]["pred"]["depth"] >= 0).all()


def test_loss_and_auxiliary_loss_weights_are_applied_by_value():
    """Each task loss is weight × the loss module's value; auxiliary ones also × aux weight."""
    tasks = dict(semseg=dict(num_classes=7, loss_weight=3.0), depth=dict(loss_weight=0.5))
    model = MultiTaskModel(
        backbone=BACKBONE,
        decoder=dict(type="TaskExpertDecoder", channels=16, num_experts=2),
        tasks=tasks,
        aux_loss_weight=0.25,
        data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=8),
    )  # training mode (aux logits); no dropout, so both forwards below give the same logits
    data = model.data_preprocessor(_batch([(32, 48), (32, 48)]), True)
    losses = model(**data, mode="loss")
    logits, decoded = model._logits(data["inputs"])
    targets = data["targets"]
    for task, weight in (("semseg", 3.0), ("depth", 0.5)):
        raw = model.losses[task](logits[task], targets[task])
        torch.testing.assert_close(losses[f"loss_{task}"], weight * raw)
    assert decoded.aux_logits, "TaskExpert emits auxiliary logits"
    for stage, per_task in decoded.aux_logits.items():
        for task, out in per_task.items():
            out = torch.nn.functional.interpolate(
                out, size=(32, 48), mode="bilinear", align_corners=False
            )
            raw = model.losses[task](out, targets[task])
            weight = 0.25 * tasks[task]["loss_weight"]
            torch.testing.assert_close(losses[f"loss_{task}_{stage}"], weight * raw)


def test_missing_targets_and_bad_mode():
    model = make_model(dict(depth={}))
    with pytest.raises(KeyError, match="depth"):
        model(torch.randn(1, 3, 32, 48), {}, mode="loss")
    with pytest.raises(ValueError, match="mode must be"):
        model(torch.randn(1, 3, 32, 48), mode="train")


def test_centre_padding_places_the_image_as_invpt_and_predict_crops_it_back():
    batch = _batch([(30, 40), (20, 45)])
    data = MultiTaskDataPreprocessor(size=(32, 48), pad_position="center")(batch)
    assert [m["pad_offset"] for m in data["meta"]] == [(1, 4), (6, 1)]  # (delta // 2) each side
    image = data["inputs"][1]
    assert (image[:, :6] == 0).all() and (image[:, 26:] == 0).all() and (image[:, :, :1] == 0).all()
    assert (data["targets"]["semseg"][1, :6] == 255).all()
    rgb = (batch["inputs"][1].float() - torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)) / (
        torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    )
    torch.testing.assert_close(image[:, 6:26, 1:46], rgb)
    model = make_model(dict(semseg=dict(num_classes=7), depth={}))
    model.data_preprocessor = MultiTaskDataPreprocessor(size=(32, 48), pad_position="center")
    model.eval()
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        results = model(**data, mode="predict")
        logits = model(data["inputs"], mode="tensor")
    assert results[1]["pred"]["depth"].shape == (20, 45)
    torch.testing.assert_close(
        results[1]["pred"]["depth"], logits["depth"][1, 0, 6:26, 1:46].clamp(min=0)
    )
    torch.testing.assert_close(results[1]["gt"]["semseg"], batch["targets"]["semseg"][1])
    with pytest.raises(ValueError, match="pad_position 'middle' is not one of"):
        MultiTaskDataPreprocessor(pad_position="middle")


def test_centre_padding_is_refused_where_the_padding_is_bottom_right(tmp_path):
    import numpy as np

    from vision_mtl.apis.inference import inference
    from vision_mtl.export.onnx_export import export_onnx

    model = make_model(dict(depth={})).eval()
    model.data_preprocessor = MultiTaskDataPreprocessor(size=(32, 48), pad_position="center")
    image = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="mode='resize' pads at the bottom/right.*'center'"):
        inference(model, image, mode="resize", canvas=(32, 48))
    with pytest.raises(ValueError, match="pad_position=bottom_right"):
        export_onnx(model, tmp_path, (32, 48))
    assert list(tmp_path.iterdir()) == []
    assert inference(model, image, mode="pad")["depth"].shape == (30, 40)
