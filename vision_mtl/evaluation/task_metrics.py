"""What every per-task metric shares: reading samples, per-image statistics, small helpers.

A metric sees one image at a time in :meth:`TaskMetric.process` and turns it into a small
*sufficient statistic* (a few numbers, a sparse confusion matrix or histogram), never a whole map.
:meth:`~mmengine.evaluator.BaseMetric.compute_metrics` then sums those statistics over the split.
Two reasons for this shape:

* the published protocols are split-level (pixels of the whole split are pooled, e.g. depth RMSE
  is the root of the mean over all valid pixels, not an average of per-image RMSEs), and sums of
  per-image statistics give exactly that;
* mmengine's ``collect_results`` gathers ``self.results`` from every rank and truncates the list
  to the dataset size to drop the sampler's padding. That only works when there is **exactly one
  item per image**, so every metric appends one item per sample, even for an image without any
  valid pixel.

The concrete metrics live in :mod:`.seg_metrics`, :mod:`.dense_metrics` and
:mod:`.saliency` and :mod:`.boundary`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from vision_mtl.tasks import get_task

#: Probability thresholds 0.05, 0.10, ..., 0.95. Built as k / 20 so that each threshold is the
#: double nearest to its decimal value (np.arange accumulates error: 0.15000000000000002), which
#: keeps ``pred >= thr`` exact for predictions such as 0.3.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(float(k) / 20 for k in range(1, 20))


def to_numpy(value: Any) -> np.ndarray:
    """A CPU numpy view of a tensor or array-like (tensors are detached first)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def sample_pair(sample: Mapping, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(pred, gt)`` of ``task`` from one ``{'pred': ..., 'gt': ..., 'meta': ...}`` sample.

    Raises:
        KeyError: the sample lacks the task's prediction or ground truth; the message lists what
            the sample does hold, which is usually enough to spot a task-list mismatch.
    """
    try:
        pred, gt = sample["pred"], sample["gt"]
    except (KeyError, TypeError):
        held = list(sample) if isinstance(sample, Mapping) else type(sample).__name__
        raise KeyError(
            f"metric for task {task!r} expects samples {{'pred': {{task: ...}}, 'gt': "
            f"{{task: ...}}}}; got {held}"
        ) from None
    if task not in pred or task not in gt:
        raise KeyError(
            f"metric for task {task!r}: the sample has predictions for {list(pred)} and ground "
            f"truth for {list(gt)}"
        )
    return to_numpy(pred[task]), to_numpy(gt[task])


def as_single_channel(value: np.ndarray, task: str, what: str) -> np.ndarray:
    """Squeeze leading singleton axes (1×H×W, 1×1×H×W) down to H×W; anything else is an error."""
    while value.ndim > 2 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 2:
        raise ValueError(f"task {task!r}: {what} must be an H×W map, got shape {value.shape}")
    return value


def check_same_shape(pred: np.ndarray, gt: np.ndarray, task: str) -> None:
    """Predictions are scored at the ground truth's size; a mismatch is a pipeline bug."""
    if pred.shape != gt.shape:
        raise ValueError(
            f"task {task!r}: prediction shape {pred.shape} differs from ground truth shape "
            f"{gt.shape} (predictions must be at the original image size)"
        )


def check_probabilities(pred: np.ndarray, task: str) -> None:
    """Reject maps that are not probabilities (logits, 0-255 images, NaNs)."""
    if pred.size and not (np.isfinite(pred).all() and pred.min() >= 0 and pred.max() <= 1):
        raise ValueError(
            f"task {task!r}: predictions must be probabilities in [0, 1], got values in "
            f"[{pred.min()}, {pred.max()}] (decode the logits first)"
        )


def binary_labels(gt: np.ndarray, ignore_index: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a 0/1 ground truth with ``ignore_index`` into (valid mask, positive mask)."""
    valid = gt != ignore_index
    values = gt[valid]
    if values.size and (values.min() < 0 or values.max() > 1):
        bad = values[(values < 0) | (values > 1)][0]
        raise ValueError(
            f"task {task!r}: ground truth must be 0/1 (or {ignore_index} = ignore), found {bad}"
        )
    return valid, valid & (gt == 1)


def sparse_bincount(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Count ``index`` values in ``[0, size)`` and keep only the non-zero bins.

    Per-image confusion matrices and angle histograms are mostly empty; storing (bins, counts)
    keeps the per-image results that cross process boundaries small.
    """
    counts = np.bincount(index.ravel(), minlength=size)
    bins = np.flatnonzero(counts)
    return bins.astype(np.int32), counts[bins].astype(np.int64)


def dense_from_sparse(items: Sequence[tuple[np.ndarray, np.ndarray]], size: int) -> np.ndarray:
    """Sum :func:`sparse_bincount` results back into one dense int64 vector of length ``size``."""
    total = np.zeros(size, np.int64)
    for bins, counts in items:
        np.add.at(total, np.asarray(bins, np.int64), np.asarray(counts, np.int64))
    return total


def safe_ratio(num: np.ndarray | float, den: np.ndarray | float, empty: float) -> np.ndarray:
    """``num / den`` elementwise, with ``empty`` where ``den`` is 0 (and no warnings)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, empty, np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without a RuntimeWarning) when there are none."""
    values = np.asarray(values, np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def resolve_pending(results: list) -> list:
    """Replace every :class:`~concurrent.futures.Future` in a result list by its value.

    Metrics that compute in worker processes append futures in ``process`` and resolve them
    right before mmengine gathers ``results`` across ranks (futures do not pickle). Nested
    lists and dicts, as :class:`MultiTaskMetric` stores them, are walked too.
    """

    def resolve(item: Any) -> Any:
        if isinstance(item, Future):
            return item.result()
        if isinstance(item, list):
            return [resolve(v) for v in item]
        if isinstance(item, dict):
            return {k: resolve(v) for k, v in item.items()}
        return item

    results[:] = [resolve(item) for item in results]
    return results


class TaskMetric(BaseMetric):
    """Base class of the per-task metrics: one task, one statistic per image, split-level sums.

    Subclasses implement :meth:`sample_stats` (one image → a small picklable statistic) and
    ``compute_metrics`` (list of statistics → ``{metric_name: float}``). :meth:`process` reads
    ``sample['pred'][task]`` and ``sample['gt'][task]`` and appends one statistic per sample.

    Args:
        task: which key of ``pred``/``gt`` to read; must be a task of :mod:`vision_mtl.tasks`.
        collect_device: device for gathering results across ranks (``'cpu'`` or ``'gpu'``).
        prefix: prefix of the metric names that :meth:`evaluate` returns; by default the task
            name, so a standalone metric reports ``semseg/mIoU`` exactly like
            :class:`~vision_mtl.evaluation.MultiTaskMetric` does. ``''`` means no prefix.
    """

    # '' rather than None: BaseMetric warns about a missing prefix, and '' lets users opt out.
    default_prefix: ClassVar[str | None] = ""

    def __init__(self, task: str, collect_device: str = "cpu", prefix: str | None = None) -> None:
        self.task = task
        self.spec = get_task(task)
        super().__init__(collect_device=collect_device, prefix=task if prefix is None else prefix)

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        """Append one statistic per sample of the batch to ``self.results``."""
        for sample in data_samples:
            self.results.append(self.sample_stats(*sample_pair(sample, self.task)))

    def evaluate(self, size: int) -> dict:
        """Wait for statistics computed in worker processes, then gather and reduce."""
        resolve_pending(self.results)
        return super().evaluate(size)

    @abstractmethod
    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> Any:
        """The sufficient statistic of one image (small, picklable, summable over the split)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r})"
