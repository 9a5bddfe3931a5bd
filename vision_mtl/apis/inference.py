"""Build a trained model from config + checkpoint and run it on images.

``init_model`` and ``inference`` are the two calls a user needs outside of training::

    model = init_model("configs/quickstart/...py", "work_dirs/.../iter_2000.pth")
    outputs = inference(model, "room.png")   # {"semseg": H×W, "depth": H×W, ...}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from vision_mtl.datasets.transforms import PackMultiTaskInputs, multitask_collate
from vision_mtl.engine import register_all_modules
from vision_mtl.engine.runner import check_checkpoint_fits
from vision_mtl.models.builder import build_model, configure_pruned
from vision_mtl.registry import SCOPE
from vision_mtl.runtime.preprocess import read_image
from vision_mtl.utils import read_checkpoint, resolve_checkpoint


def default_device() -> str:
    """CUDA when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def init_model(
    config: str | os.PathLike | Config,
    checkpoint: str | os.PathLike | None = None,
    device: str | None = None,
    cfg_options: dict | None = None,
    strict: bool = True,
) -> torch.nn.Module:
    """Build the config's model, load ``checkpoint`` (if given) and put it in eval mode.

    ``checkpoint`` may be a ``.pth`` file, a work directory or its ``last_checkpoint`` file. It
    must fit the model exactly (an error names the missing, unexpected and mismatched keys)
    unless ``strict=False`` asks for a deliberate partial load.

    The checkpoint is read with torch's ``weights_only`` loader. The config is kept as
    ``model.cfg`` and the checkpoint's ``dataset_meta`` (class names, tasks) as
    ``model.dataset_meta`` for pictures and exporters.
    """
    register_all_modules()
    cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    configure_pruned(cfg, checkpoint)  # a pruned checkpoint: build its architecture
    model = build_model(cfg.model)
    model.cfg = cfg
    model.dataset_meta = {}
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
        if strict:
            check_checkpoint_fits(model, read_checkpoint(path, mmap=True), path)
        ckpt = load_checkpoint(model, path, map_location="cpu", strict=strict)
        model.dataset_meta = dict(ckpt.get("meta", {}).get("dataset_meta") or {})
    return model.to(device or default_device()).eval()


def _test_pipeline(model: torch.nn.Module) -> Compose:
    cfg = getattr(model, "cfg", None)
    try:
        pipeline = list(cfg.test_dataloader.dataset.pipeline)
    except (AttributeError, KeyError, TypeError):
        pipeline = [PackMultiTaskInputs()]
    with DefaultScope.overwrite_default_scope(SCOPE):
        return Compose(pipeline)


@torch.no_grad()
def inference(
    model: torch.nn.Module, image: str | os.PathLike | np.ndarray
) -> dict[str, np.ndarray]:
    """Predict every task of ``model`` for one image.

    Args:
        model: a model from :func:`init_model`.
        image: a path or an H×W×3 uint8 RGB array.

    Returns:
        task → prediction at the image's size: class ids (H×W int64) for label tasks,
        probabilities (H×W float32) for edge/saliency, metres for depth, and H×W×3 unit vectors
        for normals.
    """
    if isinstance(image, (str, os.PathLike)):
        name, array = Path(image).name, read_image(image)
    else:
        name, array = "array", np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"image must be H×W×3 uint8 RGB, got {array.shape} {array.dtype}")
    sample = dict(image=array, meta=dict(name=name, ori_shape=tuple(array.shape[:2])))
    batch = multitask_collate([_test_pipeline(model)(sample)])
    data = model.data_preprocessor(batch, False)
    pred = model(**data, mode="predict")[0]["pred"]
    out = {}
    for task, value in pred.items():
        value = value.numpy()
        out[task] = value.transpose(1, 2, 0) if value.ndim == 3 else value
    return out
