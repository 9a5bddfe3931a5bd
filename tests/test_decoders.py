"""Every multitask decoder on real (toy-sized) timm backbones, and each decoder's tiny config."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, TINY_BACKBONES, TINY_OPTIONS

from vision_mtl.apis.runner import build_train_runner, load_config
from vision_mtl.models.backbones import TimmBackbone
from vision_mtl.models.decoders import (
    BaselineDecoder,
    CrossTaskAttentionDecoder,
    TaskExpertDecoder,
)

DECODERS = {
    "baseline": (BaselineDecoder, dict(channels=16)),
    "cross_task": (CrossTaskAttentionDecoder, dict(channels=16, dims=(24, 16, 8))),
    "task_expert": (TaskExpertDecoder, dict(channels=16, num_experts=3)),
}
TASK_SETS = {
    "nyud": ["semseg", "depth", "normals", "edge"],
    "pascal": ["semseg", "human_parts", "saliency", "normals", "edge"],
}
AUX_STAGE = {"baseline": None, "cross_task": "preliminary", "task_expert": "expert0"}


@pytest.mark.parametrize("tasks", sorted(TASK_SETS))
@pytest.mark.parametrize("kind", sorted(TINY_BACKBONES))
@pytest.mark.parametrize("decoder_name", sorted(DECODERS))
def test_decoder_on_a_real_backbone(decoder_name, kind, tasks):
    name, indices, kwargs = TINY_BACKBONES[kind]
    backbone = TimmBackbone(name, indices, model_kwargs=kwargs)
    cls, settings = DECODERS[decoder_name]
    task_list = TASK_SETS[tasks]
    classes = {"semseg": 5, "human_parts": 3}
    decoder = cls(backbone.out_channels, backbone.out_strides, task_list, num_classes=classes,
                  **settings)  # fmt: skip
    h, w = (32, 48) if kind == "vit" else (32, 64)
    out = decoder(backbone(torch.randn(2, 3, h, w)))
    assert list(out.features) == decoder.tasks and set(decoder.tasks) == set(task_list)
    stride = decoder.out_stride
    for task, feature in out.features.items():
        assert feature.shape == (2, decoder.out_channels[task], -(-h // stride), -(-w // stride))
    stage = AUX_STAGE[decoder_name]
    if stage is None:
        assert not out.aux_logits
    else:
        for task in task_list:
            logits = out.aux_logits[stage][task]
            assert logits.shape[:2] == (2, decoder.task_outputs(task))


@pytest.mark.parametrize(
    "config",
    [
        "configs/taskexpert/taskexpert_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py",
        "configs/invpt/invpt_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py",
    ],
)
def test_tiny_decoder_config_trains_with_intermediate_losses(config, tmp_path):
    options = {k: v for k, v in TINY_OPTIONS.items() if not k.startswith("model.decoder")}
    options["train_cfg.max_iters"] = 3
    options["train_cfg.val_interval"] = 100  # training only
    cfg = load_config(ROOT / config, options, work_dir=str(tmp_path))
    runner = build_train_runner(cfg)
    runner.train()
    logged = set(runner.message_hub.log_scalars)
    stages = {"taskexpert": ["expert0", "expert3"], "invpt": ["preliminary"]}
    for stage in stages[config.split("/")[1]]:
        for task in ("semseg", "depth", "normals", "edge"):
            assert f"train/loss_{task}_{stage}" in logged
    assert runner.iter == 3
