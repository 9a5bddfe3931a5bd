"""A label task's confusion matrix over a split, as a CSV table and as a heatmap picture.

:class:`~vision_mtl.evaluation.SegMetric` already pools a split's pixels into a K×K matrix
(rows ground truth, columns prediction, ignore pixels left out) to compute mIoU; this module
takes that very matrix out of a metric's per-image results, so the files agree with the
reported numbers exactly, and writes it for people: a CSV with the class names as headers and
a PNG heatmap drawn with OpenCV (no plotting library needed).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision_mtl.evaluation.seg_metrics import SegMetric
from vision_mtl.utils import atomic_write_bytes
from vision_mtl.visualization import save_grid

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCALE = 0.4
_PAD = 6


@dataclass(frozen=True)
class ConfusionMatrix:
    """Pixel counts of one label task: ``counts[i, j]`` pixels of class ``i`` predicted ``j``.

    Attributes:
        task: the task name (``semseg``, ``human_parts``).
        counts: K×K int64 counts, rows ground truth, columns prediction; ignore pixels excluded.
        class_names: the K class names, in class-id order.
    """

    task: str
    counts: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        k = len(self.class_names)
        if self.counts.shape != (k, k):
            raise ValueError(
                f"task {self.task!r}: a confusion matrix of shape {self.counts.shape} does not "
                f"fit its {k} class names"
            )

    def normalized(self) -> np.ndarray:
        """Each row divided by its total: the share of a true class given to each prediction.

        A class without ground-truth pixels gets a row of zeros (nothing to share out).
        """
        totals = self.counts.sum(axis=1, keepdims=True).astype(np.float64)
        return np.divide(
            self.counts, totals, out=np.zeros(self.counts.shape, np.float64), where=totals > 0
        )


def metric_confusion(metric: SegMetric, results: Sequence) -> ConfusionMatrix:
    """The split's matrix from a :class:`SegMetric` and its per-image results (before
    ``evaluate`` clears them); class names are the metric's, else the class ids."""
    names = metric.class_names or [str(i) for i in range(metric.num_classes)]
    return ConfusionMatrix(metric.task, metric.confusion_matrix(results), tuple(names))


def confusion_csv(matrix: ConfusionMatrix, normalize: bool = False) -> str:
    """The matrix as CSV: a header of prediction class names, one row per ground-truth class.

    The top-left cell reads ``ground truth \\ prediction``. Counts are integers; with
    ``normalize`` each row holds its fractions (:meth:`ConfusionMatrix.normalized`).
    """
    values = matrix.normalized() if normalize else matrix.counts
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ground truth \\ prediction", *matrix.class_names])
    for name, row in zip(matrix.class_names, values, strict=True):
        cells = [f"{v:.6f}" for v in row] if normalize else [str(int(v)) for v in row]
        writer.writerow([name, *cells])
    return buffer.getvalue()


def _text_size(text: str) -> tuple[int, int]:
    (width, height), baseline = cv2.getTextSize(text, _FONT, _SCALE, 1)
    return width, height + baseline


def _put(canvas: np.ndarray, text: str, x: int, y: int, color=(0, 0, 0)) -> None:
    """Draw ``text`` with its top-left corner at (x, y)."""
    height = _text_size(text)[1]
    cv2.putText(canvas, text, (x, y + height - 3), _FONT, _SCALE, color, 1, cv2.LINE_AA)


def _vertical_text(text: str, color=(0, 0, 0)) -> np.ndarray:
    """``text`` on a white strip, rotated to read bottom to top."""
    width, height = _text_size(text)
    strip = np.full((height + 2, width + 2, 3), 255, np.uint8)
    _put(strip, text, 1, 1, color)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _paste(canvas: np.ndarray, tile: np.ndarray, x: int, y: int) -> None:
    canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile


def _cell_text(value: float, normalize: bool) -> str:
    if normalize:
        return f"{value:.2f}"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return str(int(value))


def draw_confusion(matrix: ConfusionMatrix, normalize: bool = False) -> np.ndarray:
    """An RGB heatmap: class names on both axes, the value in every cell, a colour bar.

    Cells are coloured by the values shown (counts, or row fractions with ``normalize``) on the
    viridis scale from 0 to the largest value; the colour bar on the right gives the scale.
    """
    values = matrix.normalized() if normalize else matrix.counts.astype(np.float64)
    k = len(matrix.class_names)
    top_value = float(values.max()) if values.size and values.max() > 0 else 1.0
    cell = max(34, max(_text_size(_cell_text(v, normalize))[0] for v in values.flat) + 6)
    name_w = max(_text_size(n)[0] for n in matrix.class_names)
    line_h = _text_size("Ag")[1]
    title = f"{matrix.task}: " + (
        "share of each ground-truth class (rows sum to 1)" if normalize else "pixel counts"
    )
    left = _PAD + line_h + _PAD + name_w + _PAD  # axis title, class names
    top = _PAD + line_h + _PAD + line_h + _PAD + name_w + _PAD  # title, axis title, names
    bar_x = left + k * cell + 3 * _PAD
    bar_w = 16
    scale_w = max(_text_size(_cell_text(top_value, normalize))[0], _text_size("0")[0])
    width = max(bar_x + bar_w + _PAD + scale_w + _PAD, _PAD + _text_size(title)[0] + _PAD)
    height = top + k * cell + _PAD
    canvas = np.full((height, width, 3), 255, np.uint8)

    _put(canvas, title, _PAD, _PAD)
    axis = "prediction"
    _put(canvas, axis, left + (k * cell - _text_size(axis)[0]) // 2, 2 * _PAD + line_h)
    gt_axis = _vertical_text("ground truth")
    _paste(canvas, gt_axis, _PAD, top + max(0, (k * cell - gt_axis.shape[0]) // 2))

    levels = np.clip(values / top_value * 255, 0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)[..., ::-1]  # BGR -> RGB
    for i, name in enumerate(matrix.class_names):
        y = top + i * cell
        _put(canvas, name, left - _PAD - _text_size(name)[0], y + (cell - line_h) // 2)
        label = _vertical_text(name)
        x = left + i * cell + (cell - label.shape[1]) // 2
        _paste(canvas, label, x, top - _PAD - label.shape[0])
        for j in range(k):
            x = left + j * cell
            colour = tuple(int(c) for c in colours[i, j])
            cv2.rectangle(canvas, (x, y), (x + cell - 1, y + cell - 1), colour, -1)
            text = _cell_text(values[i, j], normalize)
            ink = (0, 0, 0) if levels[i, j] > 150 else (255, 255, 255)
            tw = _text_size(text)[0]
            _put(canvas, text, x + (cell - tw) // 2, y + (cell - line_h) // 2, ink)
    cv2.rectangle(canvas, (left - 1, top - 1), (left + k * cell, top + k * cell), (0, 0, 0), 1)

    bar_h = k * cell
    ramp = np.linspace(255, 0, bar_h).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    bar = cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)[..., ::-1]
    _paste(canvas, bar, bar_x, top)
    _put(canvas, _cell_text(top_value, normalize), bar_x + bar_w + _PAD, top)
    _put(canvas, "0", bar_x + bar_w + _PAD, top + bar_h - line_h)
    return canvas


def save_confusion(
    matrix: ConfusionMatrix, out_dir: str | os.PathLike, normalize: bool = False
) -> tuple[Path, Path]:
    """Write ``<task>_confusion.csv`` and ``<task>_confusion.png`` into ``out_dir`` atomically.

    The CSV always holds pixel counts (its sum is the split's labelled pixels); with
    ``normalize`` the row fractions also go to ``<task>_confusion_normalized.csv`` and the
    heatmap shows them.

    Returns:
        the paths of the counts CSV and of the heatmap.
    """
    out_dir = Path(out_dir)
    stem = f"{matrix.task}_confusion"
    table = out_dir / f"{stem}.csv"
    atomic_write_bytes(confusion_csv(matrix).encode(), table)
    if normalize:
        text = confusion_csv(matrix, normalize=True)
        atomic_write_bytes(text.encode(), out_dir / f"{stem}_normalized.csv")
    picture = out_dir / f"{stem}.png"
    save_grid(draw_confusion(matrix, normalize), picture)
    return table, picture
