"""Pictures of MultiMAE reconstructions: masked input, prediction and target per modality.

One PNG grid for a few samples of :meth:`MultiMAE.forward` in ``predict`` mode::

    masked input      | prediction       | target          (column captions)
    rgb <sample 0>    | ...              | ...
    depth <sample 0>  | ...              | ...
    semseg <sample 0> | ...              | ...
    rgb <sample 1>    | ...

Masked patches are grey in the masked input. RGB is mapped back from the normalized-image space
with the data preprocessor's mean and std. Depth is standardized per image (MultiMAE's target):
prediction and target are painted through turbo over the same range, the 2nd to 98th percentile
of the target's valid pixels, so their colours compare; invalid target pixels are hatched.
Semantics use the class palette of :mod:`vision_mtl.runtime.colorize` (unlabelled = hatch).
Tiles are enlarged by a whole factor (nearest neighbour, patches stay sharp) to at least
``min_tile_height`` rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from vision_mtl.runtime.colorize import caption, colorize, put_text, text_height, text_width
from vision_mtl.utils import atomic_write_bytes

COLUMNS = ("masked input", "prediction", "target")
MASK_GREY = 128
MIN_TILE_HEIGHT = 96


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def tile_scale(height: int, min_tile_height: int = MIN_TILE_HEIGHT) -> int:
    """The whole enlargement factor of a map ``height`` rows high."""
    return max(1, math.ceil(min_tile_height / max(height, 1)))


def header_height(tile_height: int) -> int:
    """Rows of the caption strip above the grid, for enlarged tiles ``tile_height`` high."""
    return round(text_height(tile_height) * 1.5)


def grid_shape(
    num_samples: int,
    num_modalities: int,
    map_size: tuple[int, int],
    min_tile_height: int = MIN_TILE_HEIGHT,
) -> tuple[int, int]:
    """``(H, W)`` of :func:`reconstruction_grid` for samples of ``map_size`` (H, W)."""
    k = tile_scale(map_size[0], min_tile_height)
    th, tw = map_size[0] * k, map_size[1] * k
    return header_height(th) + num_samples * num_modalities * th, len(COLUMNS) * tw


def _rgb(value, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    image = _numpy(value).astype(np.float32).transpose(1, 2, 0) * std + mean
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _depth(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and target through turbo over the target's 2-98 % range; invalid = hatch."""
    pred = _numpy(pred).astype(np.float32).reshape(_numpy(pred).shape[-2:])
    target = _numpy(target).astype(np.float32).reshape(pred.shape)
    valid = np.isfinite(target) & (target != 0)  # MultiMAE's depth target: 0 = invalid
    values = target[valid] if valid.any() else pred[np.isfinite(pred)]
    low, high = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
    high = max(float(high), float(low) + 1e-3)

    def paint(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        # colorize_depth treats <= 0 as "no depth": shift the range to (0, 1].
        scaled = np.clip((np.nan_to_num(x) - low) / (high - low), 0.0, 1.0) * 0.999 + 0.001
        return colorize("depth", np.where(ok, scaled, 0.0), vmax=1.0, hatch_invalid=True)

    return paint(pred, np.isfinite(pred)), paint(target, valid)


def _semseg(labels, num_classes: int | None) -> np.ndarray:
    return colorize("palette", _numpy(labels), num_classes=num_classes, hatch_invalid=True)


def modality_tiles(
    sample: dict,
    modality: str,
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(masked input, prediction, target)`` of one modality of one predicted sample, H×W×3."""
    pred, target = sample["pred"][modality], sample["target"][modality]
    if modality == "rgb":
        m = np.asarray(mean, np.float32).reshape(-1)
        s = np.asarray(std, np.float32).reshape(-1)
        painted_pred, painted_target = _rgb(pred, m, s), _rgb(target, m, s)
    elif modality == "depth":
        painted_pred, painted_target = _depth(pred, target)
    else:
        painted_pred, painted_target = _semseg(pred, num_classes), _semseg(target, num_classes)
    masked = painted_target.copy()
    mask = _numpy(sample["mask"][modality]).astype(bool).reshape(masked.shape[:2])
    masked[mask] = MASK_GREY
    return masked, painted_pred, painted_target


def _label(tile: np.ndarray, text: str, px: int) -> None:
    """Write ``text`` on a white box in the tile's top-left corner."""
    w = min(tile.shape[1], text_width(text, px) + px // 2)
    tile[: round(px * 1.4), :w] = 255
    put_text(tile, text, max(1, px // 4), px // 5, px)


def reconstruction_grid(
    samples: Sequence[dict],
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int | None = None,
    names: Sequence[str] | None = None,
    min_tile_height: int = MIN_TILE_HEIGHT,
) -> np.ndarray:
    """The RGB grid (module docstring) of MultiMAE ``predict`` outputs, H×W×3 uint8.

    Args:
        samples: per-sample dicts ``pred``, ``mask``, ``target`` (modality → map), all of one size.
        mean: the data preprocessor's per-channel mean (RGB, 0-255).
        std: its per-channel standard deviation.
        num_classes: palette size of ``semseg`` (stable colours across pictures).
        names: a label per sample, written with the modality on its rows.
        min_tile_height: tiles are enlarged by a whole factor to at least this height.

    Raises:
        ValueError: no samples, or samples of different modalities or sizes.
    """
    if not samples:
        raise ValueError("reconstruction_grid needs at least one sample")
    modalities = list(samples[0]["pred"])
    size = tuple(_numpy(samples[0]["mask"][modalities[0]]).shape[-2:])
    k = tile_scale(size[0], min_tile_height)
    th, tw = size[0] * k, size[1] * k
    px = text_height(th)
    rows = [np.concatenate([caption(tw, title, px) for title in COLUMNS], axis=1)]
    for i, sample in enumerate(samples):
        if list(sample["pred"]) != modalities:
            raise ValueError(f"sample {i} has modalities {list(sample['pred'])}, not {modalities}")
        for m in modalities:
            tiles = modality_tiles(sample, m, mean, std, num_classes)
            if tiles[0].shape[:2] != size:
                raise ValueError(f"sample {i} {m} is {tiles[0].shape[:2]}, not {size}")
            big = [cv2.resize(t, (tw, th), interpolation=cv2.INTER_NEAREST) for t in tiles]
            name = f" {names[i]}" if names is not None and i < len(names) else ""
            _label(big[0], f"{m}{name}", px)
            rows.append(np.concatenate(big, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def save_png(grid: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB grid as PNG through a temporary file and a rename; returns the path."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode the picture for {str(path)!r}")
    atomic_write_bytes(encoded.tobytes(), Path(path))
    return Path(path)
