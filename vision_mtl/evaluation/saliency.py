"""Binary probability maps: saliency maxF and a simple thresholded boundary F-measure."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vision_mtl.evaluation.task_metrics import (
    DEFAULT_THRESHOLDS,
    TaskMetric,
    as_single_channel,
    binary_labels,
    check_probabilities,
    check_same_shape,
    safe_ratio,
)
from vision_mtl.registry import METRICS


def _check_thresholds(thresholds: Sequence[float] | None, task: str) -> np.ndarray:
    values = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"task {task!r}: thresholds must be a non-empty list of numbers")
    return values


def _pair(pred: np.ndarray, gt: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    pred = as_single_channel(pred, task, "the prediction")
    gt = as_single_channel(gt, task, "the ground truth")
    check_same_shape(pred, gt, task)
    check_probabilities(pred, task)
    return pred.astype(np.float64), gt


@METRICS.register_module()
class SaliencyMetric(TaskMetric):
    """Saliency maxF (β² = 0.3) and maxIoU from split-level counts at fixed thresholds.

    For every threshold ``t`` a pixel is predicted salient when ``pred >= t``; true positives,
    predicted positives and actual positives are summed over the split (pixels whose ground truth
    is ``ignore_index`` excluded), then per threshold ``P = TP / (TP + FP)``, ``R = TP / (TP + FN)``
    and ``F = (1 + β²) P R / (β² P + R)``; ``maxF`` is the best threshold's F. That is the
    protocol of the InvPT/ATRC code. Its ``maxIoU`` counterpart here is the split-level
    ``TP / (TP + FP + FN)``, maximised over the thresholds on its own (MTL-PyTorch averages
    per-image IoUs instead).

    The InvPT-family code applies a sigmoid to the already-softmaxed probability before
    thresholding, which leaves only about five effective thresholds; ``input_sigmoid=True``
    reproduces that quirk for comparisons with their numbers.

    Args:
        thresholds: probability thresholds; default 0.05, 0.10, ..., 0.95.
        beta2: β² of the F-measure (0.3 weighs precision more, the saliency convention).
        ignore_index: ground-truth value of unlabelled pixels (ground truth otherwise 0/1).
        input_sigmoid: apply a sigmoid to the prediction first (InvPT quirk, see above).
        task: which key of the samples' ``pred``/``gt`` to read.
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    Returns (from ``compute_metrics``, percentages): ``maxF``, ``maxIoU``, and the ``threshold``
    at which maxF is reached.
    """

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        beta2: float = 0.3,
        ignore_index: int = 255,
        input_sigmoid: bool = False,
        task: str = "saliency",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)
        self.thresholds = _check_thresholds(thresholds, task)
        if beta2 <= 0:
            raise ValueError(f"task {task!r}: beta2 must be > 0, got {beta2}")
        self.beta2 = float(beta2)
        self.ignore_index = ignore_index
        self.input_sigmoid = input_sigmoid

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per image, a 3×T int64 array: TP, predicted positives, actual positives per threshold."""
        pred, gt = _pair(pred, gt, self.task)
        valid, positive = binary_labels(gt, self.ignore_index, self.task)
        if self.input_sigmoid:
            pred = 1 / (1 + np.exp(-pred))
        p, pos = pred[valid], positive[valid]
        tp = [np.count_nonzero(pos & (p >= t)) for t in self.thresholds]
        pp = [np.count_nonzero(p >= t) for t in self.thresholds]
        ap = [np.count_nonzero(pos)] * len(self.thresholds)
        return np.array([tp, pp, ap], np.int64)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum the counts over the split and take the best threshold."""
        tp, pp, ap = np.sum(np.asarray(results, np.int64), axis=0).astype(np.float64)
        precision = safe_ratio(tp, pp, 0.0)
        recall = safe_ratio(tp, ap, 0.0)
        f = safe_ratio((1 + self.beta2) * precision * recall, self.beta2 * precision + recall, 0.0)
        iou = safe_ratio(tp, pp + ap - tp, 0.0)
        best = int(np.argmax(f))
        return {
            "maxF": float(f[best] * 100),
            "maxIoU": float(iou.max() * 100),
            "threshold": float(self.thresholds[best]),
        }


def disk(radius: int) -> np.ndarray:
    """A uint8 (2r+1)×(2r+1) structuring element: every pixel within Euclidean distance r."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


@METRICS.register_module()
class EdgeFMetric(TaskMetric):
    """A simple, approximate boundary F-measure at the best fixed threshold (ODS-like).

    **Approximate**: this is not the BSDS/SEISM benchmark (no non-maximum suppression, no
    thinning, no bipartite matching). It is meant for in-training validation and checkpoint
    selection: cheap, in-process, one number that moves with boundary quality. Its values are not
    comparable with published odsF figures.

    Per image, the tolerance radius is ``r = max(1, round(max_dist × image diagonal))`` pixels
    (``max_dist`` 0.011 for NYUD-v2, 0.0075 for PASCAL-Context). For each threshold ``t``:
    ``pred_bin = pred >= t``; ``near_pred`` counts predicted pixels with a ground-truth edge within
    ``r`` and ``near_gt`` ground-truth pixels with a prediction within ``r``. The matched count is
    ``min(near_pred, near_gt)``: a one-to-one matching can never pair more, so — unlike plain
    dilation matching — a thick or everywhere-on prediction cannot buy precision (an all-ones map
    scores about the edge density, not the share of pixels near an edge). Counts are summed over
    the split, then ``P = Σ matched / Σ pred_bin``, ``R = Σ matched / Σ gt`` and
    ``F = 2PR / (P + R)``.
    Pixels whose ground truth is ``ignore_index`` are neither edges nor predictions.

    Args:
        thresholds: probability thresholds; default 0.05, 0.10, ..., 0.95.
        max_dist: tolerance as a fraction of the image diagonal.
        ignore_index: ground-truth value of unlabelled pixels (ground truth otherwise 0/1).
        task: which key of the samples' ``pred``/``gt`` to read.
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    Returns (from ``compute_metrics``): ``F`` (best over thresholds), ``P`` and ``R`` at that
    threshold (percentages) and the ``threshold`` itself.
    """

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        max_dist: float = 0.011,
        ignore_index: int = 255,
        task: str = "edge",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)
        self.thresholds = _check_thresholds(thresholds, task)
        if max_dist < 0:
            raise ValueError(f"task {task!r}: max_dist must be >= 0, got {max_dist}")
        self.max_dist = float(max_dist)
        self.ignore_index = ignore_index

    def radius(self, height: int, width: int) -> int:
        """Tolerance in pixels for an image of this size (half-up rounding, at least 1)."""
        return max(1, int(np.floor(self.max_dist * np.hypot(height, width) + 0.5)))

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per image, a 4×T int64 array: matched, predictions, matched, gt (see class doc)."""
        pred, gt = _pair(pred, gt, self.task)
        valid, edges = binary_labels(gt, self.ignore_index, self.task)
        kernel = disk(self.radius(*gt.shape))
        near_gt = cv2.dilate(edges.astype(np.uint8), kernel).astype(bool)
        n_gt = int(np.count_nonzero(edges))
        rows = []
        for t in self.thresholds:
            binary = (pred >= t) & valid
            near_pred = cv2.dilate(binary.astype(np.uint8), kernel).astype(bool)
            matched = min(np.count_nonzero(binary & near_gt), np.count_nonzero(edges & near_pred))
            rows.append([matched, np.count_nonzero(binary), matched, n_gt])
        return np.array(rows, np.int64).T

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum the counts over the split and take the best threshold."""
        matched_pred, n_pred, matched_gt, n_gt = np.sum(np.asarray(results, np.int64), axis=0)
        precision = safe_ratio(matched_pred, n_pred, 0.0)
        recall = safe_ratio(matched_gt, n_gt, 0.0)
        f = safe_ratio(2 * precision * recall, precision + recall, 0.0)
        best = int(np.argmax(f))
        return {
            "F": float(f[best] * 100),
            "P": float(precision[best] * 100),
            "R": float(recall[best] * 100),
            "threshold": float(self.thresholds[best]),
        }
