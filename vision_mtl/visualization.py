"""Pictures of predictions: one PNG per image, ground truth above prediction for every task.

Each task is painted by its TaskSpec's colormap (:mod:`vision_mtl.runtime.colorize`: palette
for labels, turbo for depth, RGB for normals, grey for edges and saliency), so a new task needs
no change here. Under each task's column a key says how to read it: the class legend (names
from the dataset's ``class_names``, else ``class i``), the colour bar with its range and unit,
or the colours of the normal axes; the no-value hatch is listed where it appears. The layout:

    input          | <task> ground truth | ...     (this row only when there is ground truth)
    (blank)        | <task> prediction  | ...
    (blank)        | key                | ...

Legend rule: a dataset with at most :data:`ALL_CLASSES_UP_TO` classes lists them all (the same
legend on every picture); a larger one lists the classes present in the column's maps.
Depth is painted over one fixed range per dataset (:func:`value_range`), so colours compare
across pictures. See ``docs/pictures.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from vision_mtl.paths import output_path
from vision_mtl.runtime.colorize import (
    HATCH,
    caption,
    colorize,
    draw_colorbar,
    draw_legend,
    invalid_mask,
    make_palette,
    overlay,
    text_height,
)
from vision_mtl.tasks import as_prediction_layout, get_task
from vision_mtl.utils import atomic_write_bytes

# Fixed colour-bar ranges per (dataset, task); a dataset's metainfo ``<task>_range`` or the
# ``value_ranges`` argument wins over this table.
VALUE_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("SynthScenesDataset", "depth"): (0.5, 8.0),
    ("NYUDv2Dataset", "depth"): (0.0, 10.0),
    ("CityscapesMTDataset", "depth"): (0.0, 80.0),
}
UNITS: dict[str, str] = {"depth": "m", "disparity": "px"}
ALL_CLASSES_UP_TO = 12
_WHITE = 255


def _to_numpy(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


def _enlarged_shape(image: np.ndarray, min_height: int) -> tuple[int, int]:
    """The image's size times the smallest integer factor reaching ``min_height`` rows."""
    factor = max(1, -(-min_height // image.shape[0]))
    return image.shape[0] * factor, image.shape[1] * factor


def _fit(tile: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if tile.shape[:2] == shape:
        return tile
    return cv2.resize(tile, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def paint(
    task: str,
    value,
    num_classes: int | None = None,
    vmax: float | None = None,
    vmin: float = 0.0,
) -> np.ndarray:
    """RGB picture of a task's target or prediction (no-value pixels hatched)."""
    spec = get_task(task)
    value = _to_numpy(value)
    return colorize(spec.colormap, value, num_classes, vmax, spec.ignore_value, vmin, True)


def value_range(
    task: str,
    maps: list[np.ndarray],
    meta: dict | None = None,
    value_ranges: dict[str, tuple[float, float]] | None = None,
) -> tuple[float, float]:
    """The (low, high) painted at the ends of a depth-like task's colour bar.

    In order: ``value_ranges[task]``, the dataset metainfo's ``<task>_range``,
    :data:`VALUE_RANGES` for the metainfo's ``dataset``, else 0 to the largest valid value of
    the first map that has one (ground truth before prediction). Grey maps (probabilities) are
    always painted from 0 to 1.
    """
    if get_task(task).colormap == "gray":
        return 0.0, 1.0
    meta = meta or {}
    given = (value_ranges or {}).get(task) or meta.get(f"{task}_range")
    given = given or VALUE_RANGES.get((str(meta.get("dataset")), task))
    if given:
        low, high = (float(v) for v in given)
        if not high > low:
            raise ValueError(f"{task} range must rise, got ({low}, {high})")
        return low, high
    for array in maps:
        valid = array[~invalid_mask("depth", array)]
        if valid.size:
            return 0.0, float(valid.max())
    return 0.0, 1.0


def _legend(task: str, maps: list[np.ndarray], count: int | None, names: list[str]) -> list:
    """Legend entries (name, colour) of a label task's column (see the module docstring)."""
    spec = get_task(task)
    present: set[int] = set()
    hatched = False
    for array in maps:
        invalid = invalid_mask("palette", array, spec.ignore_value)
        present |= {int(v) for v in np.unique(array[~invalid])}
        hatched |= bool(invalid.any())
    ids = list(range(count)) if count and count <= ALL_CLASSES_UP_TO else sorted(present)
    palette = make_palette(max([count or 0, *(i + 1 for i in ids)]))
    entries = [(names[i] if i < len(names) else f"class {i}", tuple(palette[i])) for i in ids]
    return entries + ([("ignore", HATCH)] if hatched else [])


def _key(
    task: str,
    maps: list[np.ndarray],
    count: int | None,
    names: list[str],
    span: tuple[float, float],
    width: int,
    px: int,
) -> np.ndarray:
    """The panel under a task's column that says how to read its colours."""
    spec = get_task(task)
    hatched = any(invalid_mask(spec.colormap, a, spec.ignore_value).any() for a in maps)
    if spec.colormap == "palette":
        return draw_legend(width, _legend(task, maps, count, names), px)
    if spec.colormap == "normals":
        rgb = colorize("normals", np.eye(3, dtype=np.float32)[None])[0]  # 1×3 picture of x, y, z
        entries = [(f"+{a}", tuple(c)) for a, c in zip("xyz", rgb)]
        return draw_legend(width, entries + ([("no normal", HATCH)] if hatched else []), px)
    low, high = span
    unit = UNITS.get(task, "")
    panels = [draw_colorbar(width, low, high, unit, px, spec.colormap)]
    if hatched:
        panels.append(draw_legend(width, [(f"no {task}", HATCH)], px))
    return np.concatenate(panels, axis=0)


def _stack(panels: list[np.ndarray], height: int) -> np.ndarray:
    """Panels one above the other, padded with white to ``height`` rows."""
    column = np.concatenate(panels, axis=0)
    pad = np.full((height - column.shape[0], column.shape[1], 3), _WHITE, np.uint8)
    return np.concatenate([column, pad], axis=0)


def make_grid(
    image: np.ndarray,
    pred: dict,
    gt: dict | None = None,
    num_classes: dict[str, int] | None = None,
    min_height: int = 192,
    *,
    meta: dict | None = None,
    value_ranges: dict[str, tuple[float, float]] | None = None,
    overlay_alpha: float | None = None,
) -> np.ndarray:
    """Compose input | per-task ground truth and predictions, with a key under each task.

    Args:
        image: H×W×3 uint8 RGB input (unpadded).
        pred: task → prediction (layout of ``predict`` mode).
        gt: task → ground truth, or ``None`` for photos: then there is no ground-truth row.
        num_classes: task → class count, so palettes stay stable across images (defaults to
            ``meta['num_classes']``).
        min_height: small images are enlarged (nearest, by an integer factor) to at least this
            height so the pictures stay readable.
        meta: the dataset's metainfo (``dataset``, ``class_names``, ``num_classes``, optional
            ``<task>_range``), e.g. ``model.dataset_meta``.
        value_ranges: task → (low, high) of the colour bar, overriding the dataset's.
        overlay_alpha: paint each map over the input with this weight (0–1) instead of alone.
    """
    meta = meta or {}
    counts = {**(meta.get("num_classes") or {}), **(num_classes or {})}
    names = meta.get("class_names") or {}
    gt = {t: _to_numpy(v) for t, v in (gt or {}).items() if t in pred}
    shape = _enlarged_shape(image, min_height)
    base = _fit(image, shape)
    px = text_height(shape[0])
    blank = np.full_like(base, _WHITE)
    width = shape[1]
    columns = [[caption(width, "input", px), base]]
    if gt:
        columns[0] += [caption(width, "", px), blank]
    keys = [np.zeros((0, width, 3), np.uint8)]
    for task, value in pred.items():
        maps = {"prediction": _to_numpy(value)}
        if task in gt:
            maps = {"ground truth": gt[task], **maps}
        span = value_range(task, list(maps.values()), meta, value_ranges)
        column = []
        if gt and task not in gt:
            column += [caption(width, f"{task}: no ground truth", px), blank]
        for label, array in maps.items():
            tile = _fit(paint(task, array, counts.get(task), span[1], span[0]), shape)
            if overlay_alpha is not None:
                tile = overlay(base, tile, overlay_alpha)
            column += [caption(width, f"{task} {label}", px), tile]
        columns.append(column)
        task_names = list(names.get(task) or [])
        keys.append(_key(task, list(maps.values()), counts.get(task), task_names, span, width, px))
    key_height = max(k.shape[0] for k in keys)
    body_height = max(sum(p.shape[0] for p in c) for c in columns)
    parts = [_stack(c + [k], body_height + key_height) for c, k in zip(columns, keys)]
    return np.concatenate(parts, axis=1)


def save_grid(grid: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB grid as PNG (atomically)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode the picture for {str(path)!r}")
    atomic_write_bytes(encoded.tobytes(), Path(path))


def draw_dataset_predictions(
    model,
    out_dir: str | os.PathLike,
    num: int = 8,
    value_ranges: dict[str, tuple[float, float]] | None = None,
    overlay_alpha: float | None = None,
) -> list[Path]:
    """Predict the first ``num`` samples of ``model.cfg``'s test set and save their grids."""
    from mmengine.registry import DefaultScope

    from vision_mtl.registry import DATASETS, FUNCTIONS, SCOPE

    # Through the registries (they import vision_mtl.datasets themselves): evaluation imports
    # this module, so importing the datasets package here would close an import cycle.
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(model.cfg.test_dataloader.dataset)
        multitask_collate = FUNCTIONS.get("multitask_collate")
    meta = getattr(dataset, "metainfo", None) or getattr(model, "dataset_meta", None) or {}
    paths = []
    with torch.no_grad():
        for index in range(min(num, len(dataset))):
            batch = multitask_collate([dataset[index]])
            sample = model(**model.data_preprocessor(batch, False), mode="predict")[0]
            h, w = sample["meta"]["ori_shape"]
            image = batch["inputs"][0][:, :h, :w].permute(1, 2, 0).numpy()
            grid = make_grid(
                image,
                sample["pred"],
                sample.get("gt"),
                model.num_classes,
                meta=meta,
                value_ranges=value_ranges,
                overlay_alpha=overlay_alpha,
            )
            paths.append(output_path(out_dir, str(sample["meta"].get("name", index)), ".png"))
            save_grid(grid, paths[-1])
    return paths


def make_overlay_grid(
    image: np.ndarray,
    maps: dict,
    num_classes: dict[str, int] | None = None,
    alpha: float = 0.5,
    meta: dict | None = None,
) -> np.ndarray:
    """Input | each task map blended over the input, to check alignment by eye.

    Args:
        image: H×W×3 uint8 RGB (augmented, as the model sees it before normalization).
        maps: task → target in the packed layout (H×W labels, C×H×W maps).
        num_classes: task → class count for stable palettes.
        alpha: weight of the painted map in the blend.
        meta: the dataset's metainfo, for the depth range (:func:`value_range`).
    """
    num_classes = num_classes or {}
    shape = _enlarged_shape(image, 192)
    base = _fit(image, shape)
    px = text_height(shape[0])
    tiles = [np.concatenate([caption(shape[1], "input", px), base], axis=0)]
    for task, value in maps.items():
        array = _to_numpy(as_prediction_layout(_to_numpy(value)))
        low, high = value_range(task, [array], meta)
        painted = _fit(paint(task, array, num_classes.get(task), high, low), shape)
        tile = overlay(base, painted, alpha)
        tiles.append(np.concatenate([caption(shape[1], task, px), tile], axis=0))
    return np.concatenate(tiles, axis=1)


def draw_augmented_samples(dataset, out_dir: str | os.PathLike, num: int = 8) -> list[Path]:
    """Save overlay grids of the first ``num`` samples of a dataset whose pipeline packs them."""
    paths = []
    meta = dataset.metainfo
    for index in range(min(num, len(dataset))):
        packed = dataset[index]
        image = packed["inputs"].permute(1, 2, 0).numpy()
        grid = make_overlay_grid(image, packed["targets"], meta.get("num_classes"), meta=meta)
        paths.append(output_path(out_dir, str(packed["meta"].get("name", index)), ".png"))
        save_grid(grid, paths[-1])
    return paths
