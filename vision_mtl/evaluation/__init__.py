"""Metrics: one per task, and :class:`MultiTaskMetric` that runs them together and reports Δm.

Importing this package registers every metric in :data:`vision_mtl.registry.METRICS`; the
registry's ``locations`` import it on the first look-up, so configs need no explicit import.
"""

from vision_mtl.evaluation.boundary import BoundaryMetric
from vision_mtl.evaluation.dense_metrics import DepthMetric, NormalsMetric, median_from_histogram
from vision_mtl.evaluation.multitask import MultiTaskMetric, compute_delta_m, format_metrics_table
from vision_mtl.evaluation.pareto import (
    hypervolume,
    normalized_scores,
    pareto_front,
    preference_correlation,
    spearman,
)
from vision_mtl.evaluation.saliency import SaliencyMetric
from vision_mtl.evaluation.seg_metrics import SegMetric
from vision_mtl.evaluation.task_metrics import DEFAULT_THRESHOLDS, TaskMetric

__all__ = [
    "DEFAULT_THRESHOLDS",
    "BoundaryMetric",
    "DepthMetric",
    "MultiTaskMetric",
    "NormalsMetric",
    "SaliencyMetric",
    "SegMetric",
    "TaskMetric",
    "compute_delta_m",
    "format_metrics_table",
    "hypervolume",
    "median_from_histogram",
    "normalized_scores",
    "pareto_front",
    "preference_correlation",
    "spearman",
]
