"""Regression metrics: depth (or disparity) errors and surface-normal angular errors."""

from __future__ import annotations

import numpy as np

from vision_mtl.evaluation.task_metrics import (
    TaskMetric,
    as_single_channel,
    check_same_shape,
    dense_from_sparse,
    safe_ratio,
    sparse_bincount,
)
from vision_mtl.registry import METRICS

_DEPTH_FIELDS = ("n", "sq_err", "abs_rel", "sq_rel", "log_sq", "delta1", "delta2", "delta3")


@METRICS.register_module()
class DepthMetric(TaskMetric):
    """Depth (or disparity) errors pooled over every valid pixel of the split.

    ``rmse`` is ``sqrt(Σ (p - g)² / N)`` with the sums and the valid-pixel count ``N`` taken over
    the **whole split**, the protocol of the multitask literature (InvPT, MTL-PyTorch). It is not
    the mean of per-image RMSEs, which weighs small and large images equally and differs.

    A pixel is valid where the ground truth is finite and ``> min_depth`` (0 marks missing depth)
    and, if ``max_depth`` is set, ``< max_depth`` (Cityscapes disparity is scored on
    ``0 < gt < 80``). Predictions are clamped at 0, and at ``eps`` inside logs and ratios.

    Args:
        min_depth: ground truth at or below this is invalid.
        max_depth: ground truth at or above this is invalid; ``None`` for no upper bound.
        eps: floor of the prediction inside ``log`` and ``g / p``.
        task: which key of the samples' ``pred``/``gt`` to read (``depth``, ``disparity``).
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    Returns (from ``compute_metrics``): ``rmse``, ``log_rmse`` (natural log), ``abs_rel``
    (mean ``|p - g| / g``), ``sq_rel`` (mean ``(p - g)² / g``), and ``delta1..3``: percentage of
    pixels with ``max(p / g, g / p) < 1.25^k``.
    """

    def __init__(
        self,
        min_depth: float = 0.0,
        max_depth: float | None = None,
        eps: float = 1e-9,
        task: str = "depth",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)
        if max_depth is not None and max_depth <= min_depth:
            raise ValueError(f"task {task!r}: max_depth {max_depth} <= min_depth {min_depth}")
        self.min_depth = float(min_depth)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.eps = float(eps)

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per-image sums: valid count, Σ squared error, Σ abs-rel, Σ sq-rel, Σ log², δ counts."""
        pred = as_single_channel(pred, self.task, "the prediction").astype(np.float64)
        gt = as_single_channel(gt, self.task, "the ground truth").astype(np.float64)
        check_same_shape(pred, gt, self.task)
        valid = np.isfinite(gt) & (gt > self.min_depth)
        if self.max_depth is not None:
            valid &= gt < self.max_depth
        g, p = gt[valid], pred[valid]
        if not np.isfinite(p).all():
            raise ValueError(f"task {self.task!r}: the prediction holds NaN or inf values")
        p = np.maximum(p, 0.0)
        p_eps = np.maximum(p, self.eps)
        err = p - g
        ratio = np.maximum(p_eps / g, g / p_eps)
        return np.array(
            [
                g.size,
                np.sum(err**2),
                np.sum(np.abs(err) / g),
                np.sum(err**2 / g),
                np.sum((np.log(p_eps) - np.log(g)) ** 2),
                np.sum(ratio < 1.25),
                np.sum(ratio < 1.25**2),
                np.sum(ratio < 1.25**3),
            ],
            np.float64,
        )

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Pool the per-image sums over the split and turn them into the error measures."""
        total = np.sum(np.asarray(results, np.float64).reshape(-1, len(_DEPTH_FIELDS)), axis=0)
        s = dict(zip(_DEPTH_FIELDS, total, strict=True))
        mean = {k: float(safe_ratio(v, s["n"], float("nan"))) for k, v in s.items()}
        return {
            "rmse": float(np.sqrt(mean["sq_err"])),
            "log_rmse": float(np.sqrt(mean["log_sq"])),
            "abs_rel": mean["abs_rel"],
            "sq_rel": mean["sq_rel"],
            "delta1": mean["delta1"] * 100,
            "delta2": mean["delta2"] * 100,
            "delta3": mean["delta3"] * 100,
        }


#: Width of the angle-histogram bins the median is read from (degrees).
NORMALS_BIN_DEG = 0.05
_NORMALS_BINS = int(round(180 / NORMALS_BIN_DEG))
_NORMALS_THRESHOLDS = (11.25, 22.5, 30.0)


def _norm3(v: np.ndarray) -> np.ndarray:
    """Euclidean norm of the columns of a 3×N array (row-wise arithmetic: ~3× linalg.norm)."""
    return np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def median_from_histogram(counts: np.ndarray, bin_width: float) -> float:
    """The median of values known only through a histogram of ``bin_width`` bins from 0.

    The 50% point of the cumulative histogram, interpolated linearly inside its bin (values are
    taken as spread evenly over a bin), so the error is at most one bin width wherever values are
    dense. When an even count splits into two halves with empty bins between them, the median is
    the midpoint of the gap, as ``np.median`` averages the two middle values.
    """
    counts = np.asarray(counts, np.int64)
    n = int(counts.sum())
    if n == 0:
        return float("nan")
    cum = np.cumsum(counts)
    half = n / 2
    b = int(np.searchsorted(cum, half))  # first bin whose cumulative count reaches n/2
    below = int(cum[b - 1]) if b else 0
    value = (b + (half - below) / counts[b]) * bin_width
    if n % 2 == 0 and cum[b] == half:
        nxt = b + 1 + int(np.flatnonzero(counts[b + 1 :])[0])
        value = (value + nxt * bin_width) / 2
    return float(value)


@METRICS.register_module()
class NormalsMetric(TaskMetric):
    """Angular error of surface normals, in degrees, over every valid pixel of the split.

    Both vectors are unit-normalized (the prediction too, in case a head skipped it) and the angle
    is ``2 · atan2(|p - g|, |p + g|)``, which, unlike ``acos(p · g)``, stays accurate near 0° and
    180°. Pixels whose ground truth is the zero vector are invalid.

    ``median`` is read from a split-level histogram of ``0.05°`` bins over ``[0°, 180°]``
    (:func:`median_from_histogram`): exact to within one bin, i.e. well inside the 0.1° that
    tables print, while keeping the per-image results small (no pixel list is stored).

    Args:
        task: which key of the samples' ``pred``/``gt`` to read (3×H×W maps).
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    Returns (from ``compute_metrics``): ``mean``, ``median``, ``rmse`` (root mean squared angle)
    and ``11.25``, ``22.5``, ``30``: percentage of pixels with an error below that angle.
    """

    def __init__(
        self, task: str = "normals", collect_device: str = "cpu", prefix: str | None = None
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)

    def _as_vectors(self, value: np.ndarray, what: str) -> np.ndarray:
        if value.ndim == 4 and value.shape[0] == 1:
            value = value[0]
        if value.ndim != 3 or value.shape[0] != 3:
            raise ValueError(
                f"task {self.task!r}: {what} must be a 3×H×W map of vectors, got shape "
                f"{value.shape}"
            )
        return value.astype(np.float64)

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        """Per image: (count, Σ angle, Σ angle², counts under 11.25/22.5/30°) and a histogram."""
        pred = self._as_vectors(pred, "the prediction")
        gt = self._as_vectors(gt, "the ground truth")
        check_same_shape(pred, gt, self.task)
        g = gt.reshape(3, -1)
        g_norm = _norm3(g)
        valid = np.isfinite(g_norm) & (g_norm > 0)
        g = g[:, valid] / g_norm[valid]
        p = pred.reshape(3, -1)[:, valid]
        if not np.isfinite(p).all():
            raise ValueError(f"task {self.task!r}: the prediction holds NaN or inf values")
        p = p / np.maximum(_norm3(p), 1e-12)
        angle = np.degrees(2 * np.arctan2(_norm3(p - g), _norm3(p + g)))
        sums = np.array(
            [angle.size, angle.sum(), np.sum(angle**2)]
            + [np.sum(angle < t) for t in _NORMALS_THRESHOLDS],
            np.float64,
        )
        bins = np.minimum((angle / NORMALS_BIN_DEG).astype(np.int64), _NORMALS_BINS - 1)
        return sums, sparse_bincount(bins, _NORMALS_BINS)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Pool the per-image sums and histograms over the split."""
        sums = np.zeros(3 + len(_NORMALS_THRESHOLDS), np.float64)
        for s, _ in results:
            sums += s
        hist = dense_from_sparse([h for _, h in results], _NORMALS_BINS)
        n = sums[0]
        out = {
            "mean": float(safe_ratio(sums[1], n, float("nan"))),
            "median": median_from_histogram(hist, NORMALS_BIN_DEG),
            "rmse": float(np.sqrt(safe_ratio(sums[2], n, float("nan")))),
        }
        for t, count in zip(_NORMALS_THRESHOLDS, sums[3:], strict=True):
            out[f"{t:g}"] = float(safe_ratio(count, n, float("nan")) * 100)
        return out
