"""Pictures of predictions: one PNG per image, ground truth above prediction for every task.

Each task is painted by its TaskSpec (palette for labels, colormap for depth, RGB for normals,
grey for edges and saliency), so a new task needs no change here.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from vision_mtl.paths import output_path
from vision_mtl.tasks import as_prediction_layout, get_task
from vision_mtl.utils import atomic_write_bytes

_LABEL_H = 14


def _to_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((_LABEL_H, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (2, _LABEL_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1)
    return np.concatenate([bar, tile], axis=0)


def _enlarged_shape(image: np.ndarray, min_height: int) -> tuple[int, int]:
    """The image's size times the smallest integer factor reaching ``min_height`` rows."""
    factor = max(1, -(-min_height // image.shape[0]))
    return image.shape[0] * factor, image.shape[1] * factor


def _fit(tile: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if tile.shape[:2] == shape:
        return tile
    return cv2.resize(tile, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def paint(task: str, value, num_classes: int | None = None, vmax: float | None = None):
    """RGB picture of a task's target or prediction."""
    return get_task(task).colorize(_to_numpy(value), num_classes, vmax)


def make_grid(
    image: np.ndarray,
    pred: dict,
    gt: dict | None = None,
    num_classes: dict[str, int] | None = None,
    min_height: int = 192,
) -> np.ndarray:
    """Compose input | per-task ground truth (top row) and predictions (bottom row).

    Args:
        image: H×W×3 uint8 RGB input (unpadded).
        pred: task → prediction (layout of ``predict`` mode).
        gt: task → ground truth, or ``None`` for inference on unlabelled images.
        num_classes: task → class count, so palettes stay stable across images.
        min_height: small images are enlarged (nearest, by an integer factor) to at least this
            height so the pictures stay readable.
    """
    num_classes = num_classes or {}
    shape = _enlarged_shape(image, min_height)
    image = _fit(image, shape)
    top = [_caption(image, "input")]
    bottom = [_caption(np.full_like(image, 255), "")]
    for task, value in pred.items():
        vmax = None
        if get_task(task).colormap == "depth":  # one scale for gt and prediction
            ref = _to_numpy(gt[task]) if gt and task in gt else _to_numpy(value)
            vmax = float(ref.max()) if ref.size else None
        pred_tile = _fit(paint(task, value, num_classes.get(task), vmax), shape)
        gt_tile = (
            _fit(paint(task, gt[task], num_classes.get(task), vmax), shape)
            if gt and task in gt
            else np.full_like(pred_tile, 255)
        )
        top.append(_caption(gt_tile, f"{task} gt"))
        bottom.append(_caption(pred_tile, f"{task} pred"))
    rows = [np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)]
    return np.concatenate(rows, axis=0)


def save_grid(grid: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB grid as PNG (atomically)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode the picture for {str(path)!r}")
    atomic_write_bytes(encoded.tobytes(), Path(path))


def draw_dataset_predictions(model, out_dir: str | os.PathLike, num: int = 8) -> list[Path]:
    """Predict the first ``num`` samples of ``model.cfg``'s test set and save their grids."""
    from mmengine.registry import DefaultScope

    from vision_mtl.datasets.transforms import multitask_collate
    from vision_mtl.registry import DATASETS, SCOPE

    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(model.cfg.test_dataloader.dataset)
    paths = []
    with torch.no_grad():
        for index in range(min(num, len(dataset))):
            batch = multitask_collate([dataset[index]])
            sample = model(**model.data_preprocessor(batch, False), mode="predict")[0]
            h, w = sample["meta"]["ori_shape"]
            image = batch["inputs"][0][:, :h, :w].permute(1, 2, 0).numpy()
            grid = make_grid(image, sample["pred"], sample.get("gt"), model.num_classes)
            paths.append(output_path(out_dir, str(sample["meta"].get("name", index)), ".png"))
            save_grid(grid, paths[-1])
    return paths


def make_overlay_grid(image: np.ndarray, maps: dict, num_classes: dict[str, int] | None = None):
    """Input | each task map blended over the input, to check alignment by eye.

    Args:
        image: H×W×3 uint8 RGB (augmented, as the model sees it before normalization).
        maps: task → target in the packed layout (H×W labels, C×H×W maps).
        num_classes: task → class count for stable palettes.
    """
    num_classes = num_classes or {}
    shape = _enlarged_shape(image, 192)
    base = _fit(image, shape)
    tiles = [_caption(base, "input")]
    for task, value in maps.items():
        array = _to_numpy(value)
        array = as_prediction_layout(array)
        painted = _fit(paint(task, array, num_classes.get(task)), shape)
        tiles.append(_caption((0.5 * base + 0.5 * painted).astype(np.uint8), task))
    return np.concatenate(tiles, axis=1)


def draw_augmented_samples(dataset, out_dir: str | os.PathLike, num: int = 8) -> list[Path]:
    """Save overlay grids of the first ``num`` samples of a dataset whose pipeline packs them."""
    paths = []
    for index in range(min(num, len(dataset))):
        packed = dataset[index]
        image = packed["inputs"].permute(1, 2, 0).numpy()
        grid = make_overlay_grid(image, packed["targets"], dataset.metainfo.get("num_classes"))
        paths.append(output_path(out_dir, str(packed["meta"].get("name", index)), ".png"))
        save_grid(grid, paths[-1])
    return paths
