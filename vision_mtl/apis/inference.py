"""Build a trained model from config + checkpoint and run it on images.

``init_model`` and ``inference`` are the two calls a user needs outside of training::

    model = init_model("configs/quickstart/...py", "work_dirs/.../iter_2000.pth")
    outputs = inference(model, "room.png")   # {"semseg": H×W, "depth": H×W, ...}
    photos = inference(model, ["a.jpg", "b.jpg"], mode="resize")   # one dict per image

Images of any size: ``mode="pad"`` (the default) is the test-time path of training (pipeline,
data preprocessor, ``predict`` mode) and takes images up to the config's canvas;
``mode="resize"`` and ``mode="slide"`` run the model in ``tensor`` mode on canvas-sized windows
planned and merged by :mod:`vision_mtl.runtime.tiling`, the same code the edge runtime runs
around ONNX Runtime or TensorRT, so both agree to the export's tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from vision_mtl.apis.config import check_override_keys, load_config
from vision_mtl.datasets.transforms import PackMultiTaskInputs, multitask_collate
from vision_mtl.engine import register_all_modules
from vision_mtl.engine.runner import check_checkpoint_fits
from vision_mtl.input_size import config_input_size
from vision_mtl.models.builder import build_model, configure_pruned
from vision_mtl.registry import SCOPE
from vision_mtl.runtime.decode import get_rule
from vision_mtl.runtime.preprocess import read_image
from vision_mtl.runtime.tiling import check_mode, predict_images
from vision_mtl.tasks import get_task
from vision_mtl.utils import read_checkpoint, resolve_checkpoint

ImageLike = str | os.PathLike | np.ndarray


def without_pretrained(cfg: Config) -> None:
    """Drop the backbone's ``pretrained`` weights file from ``cfg``: a checkpoint replaces it."""
    backbone = cfg.model.get("backbone")
    if isinstance(backbone, dict) and backbone.get("pretrained") is not None:
        backbone["pretrained"] = None


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

    With a checkpoint, the backbone's ``pretrained`` file is not read (the checkpoint holds
    every weight; as mmseg's ``init_model``), so a trained model loads on a machine without the
    ImageNet file. The checkpoint is read with torch's ``weights_only`` loader. The config is
    kept as ``model.cfg`` and the checkpoint's ``dataset_meta`` (class names, tasks) as
    ``model.dataset_meta`` for pictures and exporters.
    """
    register_all_modules()
    if isinstance(config, Config):
        cfg = config
        if cfg_options:
            check_override_keys(cfg, cfg_options, "the config")
            cfg.merge_from_dict(cfg_options)
    else:
        cfg = load_config(config, cfg_options)
    if checkpoint is not None:
        without_pretrained(cfg)
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


def _load(image: ImageLike, index: int | None) -> tuple[str, np.ndarray]:
    """An image's name and H×W×3 uint8 RGB array, or an error naming it."""
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name, read_image(image)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        where = "image" if index is None else f"image {index}"
        raise ValueError(f"{where} must be H×W×3 uint8 RGB, got {array.shape} {array.dtype}")
    return "array", array


def _layout(pred: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    out = {}
    for task, value in pred.items():
        value = value.numpy()
        out[task] = value.transpose(1, 2, 0) if value.ndim == 3 else value
    return out


def _infer_pad(
    model: torch.nn.Module, named: list[tuple[str, np.ndarray]], batch_size: int
) -> list[dict[str, np.ndarray]]:
    """The training test path; images padded to the same size share a forward pass.

    Only images the preprocessor pads to one size are batched together, so a prediction does
    not depend on the other images of the call.
    """
    pre = model.data_preprocessor
    size = getattr(pre, "size", None)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (name, array) in enumerate(named):
        h, w = array.shape[:2]
        if size is not None and (h > size[0] or w > size[1]):
            raise ValueError(
                f"image {name!r} is {h}x{w}, larger than the model's canvas {size[0]}x{size[1]}; "
                "use mode='resize' (scale to fit) or mode='slide' (overlapping windows) instead "
                "of 'pad'"
            )
        groups.setdefault(tuple(pre.batch_size_for([(h, w)])), []).append(i)
    pipeline = _test_pipeline(model)
    results: list[dict[str, np.ndarray] | None] = [None] * len(named)
    for indices in groups.values():
        for start in range(0, len(indices), max(1, batch_size)):
            chunk = indices[start : start + max(1, batch_size)]
            samples = [
                pipeline(dict(image=a, meta=dict(name=n, ori_shape=tuple(a.shape[:2]))))
                for n, a in (named[i] for i in chunk)
            ]
            data = model.data_preprocessor(multitask_collate(samples), False)
            for i, sample in zip(chunk, model(**data, mode="predict"), strict=True):
                results[i] = _layout(sample["pred"])
    return results


def _model_canvas(model: torch.nn.Module, canvas: tuple[int, int] | None) -> tuple[int, int]:
    if canvas is not None:
        return (int(canvas[0]), int(canvas[1]))
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ValueError("the model has no config (model.cfg) to take a canvas from; pass canvas")
    return config_input_size(cfg)


@torch.no_grad()
def inference(
    model: torch.nn.Module,
    image: ImageLike | Sequence[ImageLike],
    mode: str = "pad",
    canvas: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    batch_size: int = 4,
) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
    """Predict every task of ``model`` for one image or a list of images of any sizes.

    Args:
        model: a model from :func:`init_model`.
        image: a path or an H×W×3 uint8 RGB array, or a list or tuple of them.
        mode: ``pad`` (default): the training test path, for images up to the config's
            canvas; ``resize``: scale to fit the canvas, predict, resize the raw outputs back;
            ``slide``: overlapping canvas-sized windows at native resolution, raw outputs
            averaged (:mod:`vision_mtl.runtime.tiling`).
        canvas: the (H, W) ``resize`` and ``slide`` run the model at; default the config's
            input size (:func:`vision_mtl.input_size.config_input_size`, what export uses).
        stride: ``slide``'s window stride in pixels; default 2/3 of the canvas.
        batch_size: the most images (``pad``) or windows (``resize``, ``slide``) per forward.

    Returns:
        For one image, task → prediction at the image's size: class ids (H×W int64) for label
        tasks, probabilities (H×W float32) for edge/saliency, metres for depth, and H×W×3 unit
        vectors for normals. For a list, one such dict per image, in order.

    Raises:
        FileNotFoundError: an image file is missing or unreadable.
        ValueError: an image is not H×W×3 uint8 RGB, an unknown mode, in ``pad`` mode an
            image larger than the data preprocessor's fixed canvas, or ``resize``/``slide``
            with a model that pads centred (they pad at the bottom/right).
    """
    check_mode(mode)
    batched = isinstance(image, (list, tuple))
    images = list(image) if batched else [image]
    named = [_load(item, i if batched else None) for i, item in enumerate(images)]
    if mode == "pad":
        results = _infer_pad(model, named, batch_size)
    else:
        device = next(model.parameters()).device
        pre = model.data_preprocessor
        position = getattr(pre, "pad_position", "bottom_right")
        if position != "bottom_right":
            raise ValueError(
                f"mode={mode!r} pads at the bottom/right, but the model pads at {position!r} "
                "(data_preprocessor.pad_position); use mode='pad', which pads as the model does"
            )

        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            logits = model(torch.from_numpy(batch).to(device), mode="tensor")
            return {task: value.float().cpu().numpy() for task, value in logits.items()}

        results = predict_images(
            [array for _, array in named],
            run,
            _model_canvas(model, canvas),
            pre.mean.flatten().tolist(),
            pre.std.flatten().tolist(),
            {task: get_rule(get_task(task).decode) for task in model.tasks},
            mode,
            stride,
            batch_size,
        )
    return results if batched else results[0]
