"""Confusion matrices of a checkpoint's label tasks on its config's test set.

The test set runs through the model and the label-task metrics of the config's own test
evaluator, as built for ``tools/test.py``, so each matrix is the one behind the mIoU that tool
reports (the same pixels, the same ignore rule).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vision_mtl.apis import init_model
from vision_mtl.evaluation import MultiTaskMetric, SegMetric
from vision_mtl.evaluation.confusion import ConfusionMatrix, metric_confusion
from vision_mtl.registry import METRICS, SCOPE


def label_metrics(metrics: Sequence[BaseMetric]) -> dict[str, SegMetric]:
    """Task → the :class:`SegMetric` scoring it among ``metrics``, alone or inside a
    :class:`MultiTaskMetric` (whose class tasks exist once its ``dataset_meta`` is set)."""
    found: dict[str, SegMetric] = {}
    for metric in metrics:
        if isinstance(metric, SegMetric):
            found[metric.task] = metric
        elif isinstance(metric, MultiTaskMetric):
            found.update((t, m) for t, m in metric.metrics.items() if isinstance(m, SegMetric))
    return found


@torch.no_grad()
def confusion_on_test_set(
    cfg: Config,
    checkpoint: str | os.PathLike,
    tasks: Sequence[str] | None = None,
    device: str | None = None,
) -> tuple[dict[str, ConfusionMatrix], dict[str, float]]:
    """Run ``cfg``'s test set through ``checkpoint``; its label tasks' matrices and metrics.

    Only the label tasks' metrics process the predictions (the other tasks' protocols, such as
    the boundary benchmark, would cost minutes and are not needed here); they are the very
    :class:`SegMetric` objects the config's test evaluator builds, so the numbers are the ones
    ``tools/test.py`` reports.

    Args:
        cfg: the model's config (its ``test_dataloader`` and ``test_evaluator`` are used).
        checkpoint: a ``.pth`` file or work dir, loaded strictly (a pruned one builds its
            architecture from its record).
        tasks: the label tasks to return; default every task scored by a ``SegMetric``.
        device: where the model runs; default CUDA when present, else the CPU.

    Returns:
        task → :class:`ConfusionMatrix`, and those tasks' metrics (``<task>/mIoU``, ...).

    Raises:
        ValueError: a requested task is not a label task of the config's test evaluator (raised
            before the model is loaded).
    """
    cfg = copy.deepcopy(cfg)
    with DefaultScope.overwrite_default_scope(SCOPE):
        loader = Runner.build_dataloader(copy.deepcopy(cfg.test_dataloader))
        spec = cfg.test_evaluator
        metrics = [METRICS.build(m) for m in (spec if isinstance(spec, list) else [spec])]
    for metric in metrics:  # a MultiTaskMetric builds its class tasks from the class counts
        metric.dataset_meta = loader.dataset.metainfo
    found = label_metrics(metrics)
    if not found:
        raise ValueError(
            "the config's test evaluator scores no label task with SegMetric, so there is no "
            "confusion matrix to write"
        )
    wanted = list(found) if tasks is None else list(tasks)
    unknown = [task for task in wanted if task not in found]
    if unknown:
        raise ValueError(
            f"task(s) {unknown} have no confusion matrix: the label tasks the config's test "
            f"evaluator scores with SegMetric are {sorted(found)}"
        )
    chosen = {task: found[task] for task in wanted}
    model = init_model(cfg, checkpoint, device=device)
    for batch in loader:
        samples = model.test_step(batch)
        for metric in chosen.values():
            metric.process(batch, samples)
    matrices = {task: metric_confusion(m, m.results) for task, m in chosen.items()}
    scores = {
        f"{task}/{name}": value
        for task, metric in chosen.items()
        for name, value in metric.compute_metrics(metric.results).items()
    }
    return matrices, scores
