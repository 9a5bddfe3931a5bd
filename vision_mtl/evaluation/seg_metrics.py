"""Semantic segmentation and human-part parsing: mIoU from a split-level confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from vision_mtl.evaluation.task_metrics import (
    TaskMetric,
    as_single_channel,
    check_same_shape,
    dense_from_sparse,
    nanmean,
    safe_ratio,
    sparse_bincount,
)
from vision_mtl.registry import METRICS


@METRICS.register_module()
class SegMetric(TaskMetric):
    """mIoU, pixel accuracy and mean class accuracy over a whole split.

    Every image adds its confusion matrix (ground truth × prediction, pixels whose ground truth is
    ``ignore_index`` left out) to a split-level one; per class ``IoU = TP / (TP + FP + FN)`` is
    taken from that matrix, which is the protocol of the multitask literature (MTL-PyTorch,
    InvPT, ATRC: TP/FP/FN accumulated over the split, mIoU averaged over all ``num_classes``
    classes, background included where the dataset has one).

    A class that never occurs in the ground truth nor in the predictions of the split has
    ``TP + FP + FN = 0``: its IoU is undefined. By default (``absent_class='nan'``) it is NaN and
    left out of the mean (``nanmean``, as mmseg does). The MTL-PyTorch/InvPT code instead scores
    it 0 and keeps it in the mean; ``absent_class='zero'`` reproduces that. On the published
    splits every class occurs, so both give the same numbers; they differ on small subsets.

    All values are percentages (0-100).

    Args:
        num_classes: number of classes; predictions must be ids in ``[0, num_classes)``.
        class_names: names used in the per-class keys ``IoU.<name>``; default the class ids. When
            omitted, the dataset's ``class_names[task]`` from ``dataset_meta`` is adopted.
        ignore_index: ground-truth value of unlabelled pixels.
        absent_class: ``'nan'`` or ``'zero'``, see above.
        task: which key of the samples' ``pred``/``gt`` to read (``semseg``, ``human_parts``).
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    Returns (from ``compute_metrics``): ``mIoU``, ``aAcc`` (pixel accuracy), ``mAcc`` (mean of
    per-class recall, over classes present in the ground truth) and ``IoU.<class>`` per class.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        absent_class: Literal["nan", "zero"] = "nan",
        task: str = "semseg",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)
        if int(num_classes) < 1:
            raise ValueError(f"task {task!r}: num_classes must be >= 1, got {num_classes}")
        if absent_class not in ("nan", "zero"):
            raise ValueError(f"absent_class must be 'nan' or 'zero', got {absent_class!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.absent_class = absent_class
        self.class_names = self._check_names(class_names)

    def _check_names(self, class_names: Sequence[str] | None) -> list[str] | None:
        if class_names is None:
            return None
        names = [str(n) for n in class_names]
        if len(names) != self.num_classes:
            raise ValueError(
                f"task {self.task!r}: {len(names)} class names for {self.num_classes} classes"
            )
        return names

    @TaskMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict | None) -> None:
        """Adopt the dataset's class names and check its class count against ours."""
        self._dataset_meta = dataset_meta
        meta = dataset_meta or {}
        n = (meta.get("num_classes") or {}).get(self.task)
        if n is not None and int(n) != self.num_classes:
            raise ValueError(
                f"task {self.task!r}: the metric was built for {self.num_classes} classes but the "
                f"dataset {meta.get('dataset', '')!r} has {n}"
            )
        names = (meta.get("class_names") or {}).get(self.task)
        if self.class_names is None and names is not None:
            self.class_names = self._check_names(names)

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sparse confusion matrix of one image: (flat gt*K + pred bins, pixel counts)."""
        pred = as_single_channel(pred, self.task, "the prediction")
        gt = as_single_channel(gt, self.task, "the ground truth")
        check_same_shape(pred, gt, self.task)
        if not (np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool):
            raise ValueError(
                f"task {self.task!r}: predictions must be integer class ids, got dtype "
                f"{pred.dtype} (take the argmax of the logits first)"
            )
        k = self.num_classes
        self._check_range(pred, "prediction")
        valid = gt != self.ignore_index
        gt_valid = gt[valid].astype(np.int64)
        self._check_range(gt_valid, "ground-truth label")
        return sparse_bincount(gt_valid * k + pred[valid].astype(np.int64), k * k)

    def _check_range(self, values: np.ndarray, what: str) -> None:
        if values.size == 0:
            return
        lo, hi = values.min(), values.max()
        if lo < 0 or hi >= self.num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"task {self.task!r}: {what} value {bad} is outside [0, {self.num_classes})"
                + (
                    f" and is not the ignore value {self.ignore_index}"
                    if what != "prediction"
                    else ""
                )
            )

    def confusion_matrix(self, results: Sequence) -> np.ndarray:
        """The split's K×K confusion matrix (rows ground truth, columns prediction)."""
        k = self.num_classes
        return dense_from_sparse(results, k * k).reshape(k, k)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Reduce per-image confusion matrices to ``mIoU``, ``aAcc``, ``mAcc``, ``IoU.<class>``."""
        cm = self.confusion_matrix(results)
        tp = np.diag(cm).astype(np.float64)
        gt_count = cm.sum(axis=1)
        union = gt_count + cm.sum(axis=0) - tp
        empty = float("nan") if self.absent_class == "nan" else 0.0
        iou = safe_ratio(tp, union, empty) * 100
        acc = safe_ratio(tp, gt_count, float("nan")) * 100
        out = {
            "mIoU": nanmean(iou),
            "aAcc": float(safe_ratio(tp.sum(), cm.sum(), float("nan")) * 100),
            "mAcc": nanmean(acc),
        }
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        out.update({f"IoU.{name}": float(v) for name, v in zip(names, iou, strict=True)})
        return out
