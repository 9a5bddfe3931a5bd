"""Trivial predictors: what a model must beat to show it learned anything.

Each task's TaskSpec names its trivial predictor: the training set's majority class (label
tasks), its mean depth, its mean normal direction, an all-zero boundary map, or its mean
saliency. They are fitted on training samples and scored with the same metric as the model, so
the demo can print both side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from vision_mtl.tasks import as_prediction_layout, get_task


def fit_trivial(dataset, tasks: Sequence[str], num_samples: int = 500) -> dict[str, object]:
    """Statistics of the raw (unaugmented) training samples that the trivial predictors use.

    Args:
        dataset: a :class:`~vision_mtl.datasets.base.MultiTaskDataset` (``load_sample`` is used,
            so no augmentation is involved).
        tasks: tasks to fit.
        num_samples: how many samples to read (the first ones).
    """
    count = min(len(dataset), num_samples)
    if count < 1:
        raise ValueError("fit_trivial needs a dataset with at least one sample")
    sums: dict[str, np.ndarray] = {}
    for index in range(count):
        sample = dataset.load_sample(index)
        for task in tasks:
            spec = get_task(task)
            value = np.asarray(sample[task])
            if spec.target_kind == "label":
                valid = value[value != spec.ignore_value].astype(np.int64)
                hist = np.bincount(valid.ravel(), minlength=256)[:256].astype(np.float64)
                sums[task] = sums.get(task, 0) + hist
            else:
                flat = value.reshape(-1, value.shape[-1] if value.ndim == 3 else 1)
                valid = np.abs(flat).sum(axis=1) > 0
                acc = np.concatenate([flat[valid].sum(axis=0), [valid.sum()]]).astype(np.float64)
                sums[task] = sums.get(task, 0) + acc
    stats: dict[str, object] = {}
    for task in tasks:
        spec, acc = get_task(task), sums[task]
        if spec.trivial == "majority":
            stats[task] = int(np.argmax(acc))
        elif spec.trivial == "zeros":
            stats[task] = 0.0
        elif spec.target_kind == "label":  # "mean" of a binary label: the positive share
            stats[task] = float(acc[1] / max(acc[:2].sum(), 1.0))
        else:
            mean = acc[:-1] / max(acc[-1], 1.0)
            if spec.trivial == "unit_mean":
                mean = mean / max(np.linalg.norm(mean), 1e-12)
            stats[task] = mean.astype(np.float32)
    return stats


def trivial_prediction(task: str, stat: object, shape: tuple[int, int]) -> torch.Tensor:
    """A constant prediction of ``shape`` in the ``predict``-mode layout of ``task``."""
    spec = get_task(task)
    h, w = shape
    if spec.trivial == "majority":
        return torch.full((h, w), int(stat), dtype=torch.int64)
    if spec.trivial in ("zeros", "mean") and np.ndim(stat) == 0:
        return torch.full((h, w), float(stat), dtype=torch.float32)
    vec = torch.as_tensor(np.asarray(stat, np.float32))
    if vec.numel() == 1:
        return torch.full((h, w), float(vec), dtype=torch.float32)
    return vec.view(-1, 1, 1).expand(-1, h, w).clone()


def evaluate_trivial(stats: dict[str, object], dataloader, metric: BaseMetric) -> dict[str, float]:
    """Score the trivial predictors on every sample of ``dataloader`` with ``metric``.

    The dataloader must yield collated batches (``multitask_collate``) and have a ``dataset``;
    ground truth is taken unpadded at each image's original size, exactly as the model's
    ``predict`` mode provides it. Under distributed evaluation every rank scores its shard and the
    results are gathered.
    """
    for batch in dataloader:
        samples = []
        for index, meta in enumerate(batch["meta"]):
            h, w = meta["ori_shape"]
            gt = {}
            for task, maps in batch["targets"].items():
                value = maps[index][..., :h, :w]
                gt[task] = as_prediction_layout(value)
            pred = {t: trivial_prediction(t, stats[t], (h, w)) for t in stats}
            samples.append(dict(meta=meta, pred=pred, gt=gt))
        metric.process(batch, samples)
    # The split's size, not this process's share: mmengine gathers every rank's results and
    # trims the sampler's padding to this count.
    return metric.evaluate(len(dataloader.dataset))


def evaluate_config_trivial(cfg, num_fit_samples: int = 500) -> dict[str, float]:
    """Fit the trivial predictors on a config's training set and score them on its test set."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from vision_mtl.registry import DATASETS, METRICS, SCOPE

    with DefaultScope.overwrite_default_scope(SCOPE):
        train_cfg = dict(cfg.train_dataloader.dataset)
        train_cfg["pipeline"] = []
        train_set = DATASETS.build(train_cfg)
        loader = Runner.build_dataloader(cfg.test_dataloader)
        evaluator = cfg.test_evaluator
        metric = METRICS.build(evaluator if isinstance(evaluator, dict) else evaluator[0])
    metric.dataset_meta = loader.dataset.metainfo
    stats = fit_trivial(train_set, train_set.tasks, num_fit_samples)
    return evaluate_trivial(stats, loader, metric)
