"""Training curves: the scalars mmengine logged in work dirs, plotted against iteration.

Every run writes ``<work_dir>/<YYYYMMDD_HHMMSS>/vis_data/scalars.json``: one JSON object per
line, training lines (``loss``, ``lr``, ``loss_<task>``, ``grad_norm``, ``time``, ... with
``iter`` and ``step``) every logger interval, validation lines (``semseg/mIoU``, ...,
with ``step`` only, the iteration validated at) after each validation. A resumed run continues
in a new timestamp directory, so a work dir's files are read in timestamp order; where two hold
the same step of a key (a run restarted in the same work dir), the later value is kept. A key
logged by both kinds of line (``time``, ``data_time``) is read from the training lines.

The chart is drawn with OpenCV: one panel per key, one colour per run, a legend naming the runs.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from vision_mtl.visualization import save_grid

#: A run's series: key → iteration → value.
Scalars = dict[str, dict[int, float]]

_TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCALE = 0.4
# Tableau's ten colours (RGB): distinct on white and for most colour-blind readers.
_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def scalar_files(work_dir: str | os.PathLike) -> list[Path]:
    """The work dir's ``<timestamp>/vis_data/scalars.json`` files, oldest first.

    Raises:
        FileNotFoundError: the work dir does not exist or holds no scalars file.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise FileNotFoundError(f"work dir {str(work_dir)!r} does not exist")
    files = sorted(
        path / "vis_data/scalars.json"
        for path in work_dir.iterdir()
        if _TIMESTAMP.match(path.name) and (path / "vis_data/scalars.json").is_file()
    )
    if not files:
        raise FileNotFoundError(
            f"work dir {str(work_dir)!r} holds no <timestamp>/vis_data/scalars.json: no training "
            "has logged there"
        )
    return files


def read_scalars(work_dir: str | os.PathLike) -> Scalars:
    """Every numeric key the work dir's runs logged, as key → step → value.

    Raises:
        FileNotFoundError: as :func:`scalar_files`.
        ValueError: a line that is not a JSON object with an integer ``step`` (naming the file
            and line).
    """
    train: Scalars = {}
    other: Scalars = {}
    for path in scalar_files(work_dir):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"{str(path)!r} line {number} is not a JSON object with an integer 'step'"
                ) from None
            series = train if "iter" in record else other
            for key, value in record.items():
                if key not in ("step", "iter", "epoch") and isinstance(value, (int, float)):
                    series.setdefault(key, {})[step] = float(value)
    return {**other, **train}


def check_keys(runs: Mapping[str, Scalars], keys: Sequence[str]) -> None:
    """Check that every key is logged by at least one run.

    Raises:
        KeyError: a key no run logged, naming it, the work dirs and the keys they did log.
    """
    available = sorted({key for scalars in runs.values() for key in scalars})
    unknown = [key for key in keys if key not in available]
    if unknown:
        raise KeyError(
            f"key(s) {unknown} are not logged in {list(runs)}; available keys: {available}"
        )


def _text(canvas: np.ndarray, text: str, x: int, y: int, colour=(0, 0, 0)) -> None:
    """Draw ``text`` with its baseline-left corner at (x, y)."""
    cv2.putText(canvas, text, (x, y), _FONT, _SCALE, colour, 1, cv2.LINE_AA)


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, _FONT, _SCALE, 1)[0][0]


def _ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About ``count`` round tick values covering [low, high]."""
    if high <= low:
        return np.array([low])
    raw = (high - low) / count
    magnitude = 10 ** np.floor(np.log10(raw))
    step = min(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = np.ceil(low / step) * step
    return np.arange(first, high + step * 1e-9, step)


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def _panel(
    key: str, runs: Mapping[str, Scalars], colours: Sequence, x_range: tuple[int, int]
) -> np.ndarray:
    """One key's chart: y ticks and labels, x ticks, one polyline with dots per run."""
    width, height, left, right, top, bottom = 720, 240, 70, 16, 24, 34
    canvas = np.full((height, width, 3), 255, np.uint8)
    values = [
        v for scalars in runs.values() for v in scalars.get(key, {}).values() if math.isfinite(v)
    ]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - max(abs(low) * 0.05, 1e-6), high + max(abs(high) * 0.05, 1e-6)
    margin = (high - low) * 0.05
    low, high = low - margin, high + margin
    x0, x1 = x_range
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_pixel(step: float, value: float) -> tuple[int, int]:
        return (
            int(round(left + (step - x0) / (x1 - x0) * plot_w)),
            int(round(top + (high - value) / (high - low) * plot_h)),
        )

    for tick in _ticks(low, high):
        _, y = to_pixel(x0, tick)
        cv2.line(canvas, (left, y), (left + plot_w, y), (225, 225, 225), 1)
        label = _format(float(tick))
        _text(canvas, label, left - 6 - _text_width(label), y + 4)
    for tick in _ticks(x0, x1):
        if float(tick) != int(tick):
            continue
        x, _ = to_pixel(tick, low)
        cv2.line(canvas, (x, top + plot_h), (x, top + plot_h + 4), (0, 0, 0), 1)
        label = str(int(tick))
        _text(canvas, label, x - _text_width(label) // 2, top + plot_h + 17)
    cv2.rectangle(canvas, (left, top), (left + plot_w, top + plot_h), (0, 0, 0), 1)
    _text(canvas, key if values else f"{key} (no finite value logged)", left, top - 8)
    _text(canvas, "iteration", left + plot_w - _text_width("iteration"), height - 4)
    for colour, scalars in zip(colours, runs.values(), strict=True):
        series = sorted(scalars.get(key, {}).items())
        # A non-finite value (NaN: a class absent from a small validation set) breaks the line.
        pieces: list[list[tuple[int, int]]] = [[]]
        for step, value in series:
            if math.isfinite(value):
                pieces[-1].append(to_pixel(step, value))
            elif pieces[-1]:
                pieces.append([])
        for piece in pieces:
            if len(piece) > 1:
                cv2.polylines(canvas, [np.array(piece, np.int32)], False, colour, 2, cv2.LINE_AA)
            for point in piece:
                cv2.circle(canvas, point, 3, colour, -1, cv2.LINE_AA)
    return canvas


def _legend(labels: Sequence[str], colours: Sequence, width: int) -> np.ndarray:
    """Rows of colour swatches and run labels, wrapped to ``width``."""
    entries = [
        (label, colour, 30 + _text_width(label) + 16)
        for label, colour in zip(labels, colours, strict=True)
    ]
    rows: list[list] = [[]]
    used = 8
    for entry in entries:
        if rows[-1] and used + entry[2] > width:
            rows.append([])
            used = 8
        rows[-1].append(entry)
        used += entry[2]
    canvas = np.full((8 + 18 * len(rows), width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        x, y = 8, 18 + 18 * r
        for label, colour, size in row:
            cv2.line(canvas, (x, y - 4), (x + 22, y - 4), colour, 2, cv2.LINE_AA)
            cv2.circle(canvas, (x + 11, y - 4), 3, colour, -1, cv2.LINE_AA)
            _text(canvas, label, x + 30, y)
            x += size
    return canvas


def draw_curves(runs: Mapping[str, Scalars], keys: Sequence[str]) -> np.ndarray:
    """An RGB chart of ``keys`` (one panel each, stacked) for every run, with a legend.

    Args:
        runs: run label → its scalars (:func:`read_scalars`), drawn in this order.
        keys: the keys to plot; each must be logged by at least one run.

    Raises:
        KeyError: as :func:`check_keys`.
    """
    check_keys(runs, keys)
    colours = [_COLOURS[i % len(_COLOURS)] for i in range(len(runs))]
    steps = [s for scalars in runs.values() for k in keys for s in scalars.get(k, {})]
    x_range = (min(steps), max(steps))
    panels = [_panel(key, runs, colours, x_range) for key in keys]
    legend = _legend(list(runs), colours, panels[0].shape[1])
    return np.concatenate([legend, *panels], axis=0)


def run_labels(work_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Short names for runs: each work dir's name, or its whole path where names repeat."""
    names = [Path(w).resolve().name for w in work_dirs]
    return [
        name if names.count(name) == 1 else str(Path(w))
        for name, w in zip(names, work_dirs, strict=True)
    ]


def plot_runs(
    work_dirs: Sequence[str | os.PathLike], keys: Sequence[str], out: str | os.PathLike
) -> dict[str, Scalars]:
    """Plot ``keys`` of the runs in ``work_dirs`` against iteration into the PNG ``out``.

    Returns:
        run label → its scalars, as plotted.

    Raises:
        FileNotFoundError: a work dir without a scalars file (naming it).
        KeyError: a key no run logged (naming it and the available keys).
    """
    runs = {
        label: read_scalars(work_dir)
        for label, work_dir in zip(run_labels(work_dirs), work_dirs, strict=True)
    }
    save_grid(draw_curves(runs, keys), out)
    return runs
