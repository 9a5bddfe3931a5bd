"""CrossTaskAttentionDecoder: shapes on ViT-, Swin- and CNN-like inputs, training, ONNX parity."""

from __future__ import annotations

import pytest
import torch
from conftest import QUICKSTART, TINY_OPTIONS

from vision_mtl.apis.runner import build_train_runner, load_config
from vision_mtl.models.decoders import CrossTaskAttentionDecoder

TINY = dict(channels=16, dims=(24, 16, 8), heads=2)


@pytest.mark.parametrize(
    "channels, strides, size",
    [
        ([32] * 4, [16] * 4, (96, 128)),  # plain ViT: one stride, first stage at 32
        ([16, 32, 64, 128], [4, 8, 16, 32], (64, 96)),  # Swin / CNN pyramid
        ([24, 48], [8, 16], (48, 80)),  # a short CNN pyramid
    ],
)
@pytest.mark.parametrize("tasks", [["semseg", "depth", "normals", "edge"], ["saliency", "edge"]])
def test_output_shapes_and_preliminary_predictions(channels, strides, size, tasks):
    decoder = CrossTaskAttentionDecoder(channels, strides, tasks, {"semseg": 5}, **TINY)
    feats = [torch.randn(2, c, size[0] // s, size[1] // s) for c, s in zip(channels, strides)]
    out = decoder(feats)
    assert list(out.features) == decoder.tasks and set(tasks) == set(decoder.tasks)
    for task in tasks:
        assert out.features[task].shape == (2, 24, size[0] // 4, size[1] // 4)
        prelim = out.aux_logits["preliminary"][task]
        assert prelim.shape[:2] == (2, decoder.task_outputs(task))


def test_every_parameter_receives_gradient():
    tasks = ["semseg", "depth"]
    decoder = CrossTaskAttentionDecoder([32] * 4, [16] * 4, tasks, {"semseg": 5}, **TINY)
    out = decoder([torch.randn(2, 32, 6, 8) for _ in range(4)])
    loss = sum(f.square().mean() for f in out.features.values())
    loss = loss + sum(p.square().mean() for p in out.aux_logits["preliminary"].values())
    loss.backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_attention_of_the_previous_stage_changes_the_next():
    decoder = CrossTaskAttentionDecoder([32] * 4, [16] * 4, ["depth", "edge"], **TINY).eval()
    feats = [torch.randn(1, 32, 6, 8) for _ in range(4)]
    before = decoder(feats).features["depth"]
    with torch.no_grad():
        decoder.stages[1].attn.fuse_scores.weight[:, 2:] += 1.0  # weight on carried scores
    assert not torch.allclose(before, decoder(feats).features["depth"])


def test_trains_in_the_quickstart_model_with_intermediate_losses(tmp_path):
    options = dict(TINY_OPTIONS)
    options["model.decoder"] = dict(type="CrossTaskAttentionDecoder", **TINY)
    options["model.head"] = dict(type="ConvHead", num_convs=0)
    options["train_cfg.max_iters"] = 2
    cfg = load_config(QUICKSTART, options, work_dir=str(tmp_path))
    runner = build_train_runner(cfg)
    runner.train()
    logged = set(runner.message_hub.log_scalars)
    for task in ("semseg", "depth", "normals", "edge"):
        assert f"train/loss_{task}_preliminary" in logged
