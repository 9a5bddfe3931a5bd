"""Saliency maxF by the three protocols papers report, and the max mIoU of MTL-PyTorch."""

from __future__ import annotations

from collections.abc import Sequence

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

#: MTL-PyTorch's (and MTI-Net's) saliency thresholds, ``np.linspace(0.2, 0.9, 15)``.
MTL_THRESHOLDS = tuple(np.linspace(0.2, 0.9, 15))

PROTOCOLS = ("standard", "invpt", "mtl")


def _check_thresholds(thresholds: Sequence[float] | None, protocol: str, task: str) -> np.ndarray:
    default = MTL_THRESHOLDS if protocol == "mtl" else DEFAULT_THRESHOLDS
    values = np.asarray(default if thresholds is None else thresholds, np.float64)
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
    """Saliency maxF from split-level or image-averaged counts, and max mIoU, at fixed thresholds.

    ``protocol='standard'`` (and ``'invpt'``): for every threshold ``t`` a pixel is predicted
    salient when ``q >= t``, where ``q`` is the predicted probability or, with ``'invpt'``, its
    sigmoid. True positives, predicted positives and actual positives are summed over the split
    (pixels whose ground truth is ``ignore_index`` excluded); per threshold
    ``P = TP / (TP + FP)``, ``R = TP / (TP + FN)`` and ``F = (1 + β²) P R / (β² P + R)``;
    ``maxF`` is the best threshold's F (β² = 0.3 by default).

    ``protocol='mtl'`` is MTL-PyTorch's and MTI-Net's (``evaluation/eval_sal.py``): thresholds
    ``linspace(0.2, 0.9, 15)`` applied as ``q > t``; per image ``P = TP / (TP + FP + 1e-12)``
    and ``R = TP / (TP + FN + 1e-12)``, averaged over the images; ``F = (1 + β²) P R /
    (β² P + R + 1e-12)`` of those averages, with β² = 1 by default as their code computes it
    (``2 P R / (P + R)``); ``maxF`` the best threshold's.

    ``max_mIoU`` is MTL-PyTorch's figure in every protocol: per threshold, the mean over images
    of ``TP / (TP + FP + FN)`` (1 for an image with neither predicted nor actual positives),
    maximized over the thresholds.

    ``protocol='invpt'`` reproduces the InvPT/TaskPrompter/TaskExpert code, which applies a
    sigmoid to the already-softmaxed saliency probability before thresholding. Sigmoid maps
    [0, 1] onto [0.5, 0.731], so of the 19 thresholds only 0.5 … 0.7 separate anything: they are
    ``p >= 0, 0.20, 0.41, 0.62, 0.85`` on the probability, and every threshold below 0.5 marks
    the whole image salient. Use it to compare with those papers' numbers, ``'standard'``
    otherwise.

    Args:
        thresholds: probability thresholds; default 0.05, 0.10, ..., 0.95 (``'mtl'``: its 15).
        beta2: β² of the F-measure; default 0.3 (weighs precision more, the saliency
            convention), 1 with ``protocol='mtl'``.
        protocol: ``'standard'``, ``'invpt'`` or ``'mtl'`` (see above).
        ignore_index: ground-truth value of unlabelled pixels (ground truth otherwise 0/1).
        task: which key of the samples' ``pred``/``gt`` to read.
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    Returns (from ``compute_metrics``, percentages): ``maxF``, ``max_mIoU``, and the
    ``threshold`` at which maxF is reached.
    """

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        beta2: float | None = None,
        protocol: str = "standard",
        ignore_index: int = 255,
        task: str = "saliency",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"task {task!r}: protocol must be one of {PROTOCOLS}, got {protocol!r}"
            )
        self.thresholds = _check_thresholds(thresholds, protocol, task)
        if beta2 is None:
            beta2 = 1.0 if protocol == "mtl" else 0.3
        if beta2 <= 0:
            raise ValueError(f"task {task!r}: beta2 must be > 0, got {beta2}")
        self.beta2 = float(beta2)
        self.protocol = protocol
        self.ignore_index = ignore_index

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per image, a 3×T int64 array: TP, predicted positives, actual positives per threshold."""
        pred, gt = _pair(pred, gt, self.task)
        valid, positive = binary_labels(gt, self.ignore_index, self.task)
        if self.protocol == "invpt":
            pred = 1 / (1 + np.exp(-pred))
        p, pos = pred[valid], positive[valid]
        # MTL-PyTorch thresholds with '>', the others with '>='.
        above = [(p > t) if self.protocol == "mtl" else (p >= t) for t in self.thresholds]
        tp = [np.count_nonzero(pos & a) for a in above]
        pp = [np.count_nonzero(a) for a in above]
        ap = [np.count_nonzero(pos)] * len(self.thresholds)
        return np.array([tp, pp, ap], np.int64)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum (or average) the counts, take the best threshold; average per-image IoUs."""
        per_image = np.asarray(results, np.int64).reshape(-1, 3, len(self.thresholds))
        i_tp, i_pp, i_ap = per_image[:, 0], per_image[:, 1], per_image[:, 2]
        b2 = self.beta2
        if self.protocol == "mtl":  # image-averaged precision and recall, with their epsilons
            precision = (i_tp / (i_pp + 1e-12)).mean(axis=0)
            recall = (i_tp / (i_ap + 1e-12)).mean(axis=0)
            f = (1 + b2) * precision * recall / (b2 * precision + recall + 1e-12)
        else:
            tp, pp, ap = per_image.sum(axis=0).astype(np.float64)
            precision = safe_ratio(tp, pp, 0.0)
            recall = safe_ratio(tp, ap, 0.0)
            f = safe_ratio((1 + b2) * precision * recall, b2 * precision + recall, 0.0)
        iou = safe_ratio(i_tp, i_pp + i_ap - i_tp, 1.0)  # nothing predicted, nothing there: 1
        best = int(np.argmax(f))
        return {
            "maxF": float(f[best] * 100),
            "max_mIoU": float(iou.mean(axis=0).max() * 100),
            "threshold": float(self.thresholds[best]),
        }
