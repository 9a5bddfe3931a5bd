"""Complexity of a config's model: parameters and MACs without building it for real."""

from __future__ import annotations

import copy

import torch

from vision_mtl.complexity import count_macs, count_parameters
from vision_mtl.models.builder import build_model


def config_complexity(cfg, shape: tuple[int, int]) -> dict:
    """Parameters and MACs, per component, of ``cfg``'s model on one 1×3×H×W image.

    The model is built without pretrained weights on PyTorch's meta device: shapes only,
    nothing allocated or computed, so ViT-L counts in seconds, and the counts equal those on a
    real device. ``cfg`` is an mmengine ``Config``; ``shape`` comes from
    :func:`vision_mtl.input_size.config_input_size`.

    Returns:
        ``input`` (``[1, 3, H, W]``), ``params`` and ``macs`` (as :func:`count_parameters` and
        :func:`count_macs` return them).
    """
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict({"model.backbone.pretrained": None})
    with torch.device("meta"):
        model = build_model(cfg.model).eval()
    height, width = shape
    image = torch.zeros(1, 3, height, width, device="meta")
    return dict(
        input=[1, 3, height, width],
        params=count_parameters(model),
        macs=count_macs(model, image, mode="tensor"),
    )
