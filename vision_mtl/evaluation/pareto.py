"""Controllability measures of a width search: rank correlation, Pareto fronts, hypervolume.

A controllable multitask model (Aich et al., ICCV 2023) turns a vector of task preferences into
a sub-network; it is judged by sampling preference vectors at one compute budget and asking

* does a task's metric follow its preference? — :func:`spearman` between each task's preferences
  and its scores over the samples (the paper reports the mean over tasks);
* how good is the set of trade-offs reached? — :func:`hypervolume` of the samples' per-task
  scores (:func:`normalized_scores`, all higher-is-better), with :func:`pareto_front` picking
  the non-dominated ones.

Everything here maximizes and works on plain numpy arrays, so the same functions serve per-task
scores, (Δm, −MACs) pairs, or anything else the caller turns into higher-is-better columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vision_mtl.evaluation.multitask import primary_metrics
from vision_mtl.tasks import get_task


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of ranks start+1 .. end
            start = end
    return ranks


def _vector(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two paired samples (ties get average ranks).

    The Pearson correlation of the two rank vectors, as ``scipy.stats.spearmanr`` computes it.

    Args:
        x: one value per sample (e.g. a task's preference in each of the sampled vectors).
        y: the paired values (e.g. that task's score under each vector's chosen configuration).

    Returns:
        The correlation in [-1, 1], or ``nan`` when ``x`` or ``y`` is constant: the rank
        correlation is undefined then (every rank is the same), and a number such as 0 would
        wrongly claim "no control" where the samples simply cannot tell. Average over tasks
        with ``np.nanmean`` and report how many were undefined.

    Raises:
        ValueError: inputs that are not one-dimensional, of different lengths, shorter than
            2, or not finite.
    """
    a, b = _vector("x", x), _vector("y", y)
    if len(a) != len(b):
        raise ValueError(f"x and y must pair up, got {len(a)} and {len(b)} values")
    if len(a) < 2:
        raise ValueError(f"a rank correlation needs at least 2 samples, got {len(a)}")
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    value = float(np.dot(ra, rb) / math.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))
    return min(1.0, max(-1.0, value))


def _matrix(points: Sequence[Sequence[float]] | np.ndarray, name: str = "points") -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim == 1 and array.size == 0:
        return array.reshape(0, 0)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (points × objectives), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no nan/inf)")
    return array


def _dominated(points: np.ndarray) -> np.ndarray:
    """Mask of points some other point dominates (≥ everywhere, > somewhere)."""
    ge = np.all(points[:, None, :] >= points[None, :, :], axis=2)  # [i, j]: i ≥ j everywhere
    gt = np.any(points[:, None, :] > points[None, :, :], axis=2)
    return np.any(ge & gt, axis=0)  # j is dominated if some i dominates it


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices of the non-dominated points, every objective maximized.

    A point is dominated when another is at least as good in every objective and better in
    one. Duplicates do not dominate each other, so every copy of a non-dominated point is kept.

    Args:
        points: ``(n, d)`` values, one row per point (negate objectives to be minimized).

    Returns:
        The indices of the non-dominated rows, ascending (``[]`` for no points).

    Raises:
        ValueError: not a 2-D array, or values that are not finite.
    """
    array = _matrix(points)
    if len(array) == 0:
        return []
    return [int(i) for i in np.flatnonzero(~_dominated(array))]


def _unique_front(points: np.ndarray) -> np.ndarray:
    """The non-dominated points without duplicates (they add no volume)."""
    points = np.unique(points, axis=0)
    return points[~_dominated(points)]


def _hv2d(points: np.ndarray) -> float:
    """Area dominated by 2-D points (all > 0; reference at the origin)."""
    order = np.argsort(-points[:, 0], kind="mergesort")
    area, best_y = 0.0, 0.0
    for x, y in points[order]:
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def _wfg(points: np.ndarray) -> float:
    """Exact hypervolume of positive points against the origin (WFG, While et al. 2012).

    The volume is the sum of each point's exclusive contribution against the points after it:
    its box minus the union of its intersections with their boxes (a box again, the
    element-wise minimum), which is a smaller hypervolume problem.
    """
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(points.max())
    if points.shape[1] == 2:
        return _hv2d(points)
    points = points[np.argsort(-points[:, -1], kind="mergesort")]
    total = 0.0
    for k in range(len(points)):
        box = float(np.prod(points[k]))
        rest = points[k + 1 :]
        if len(rest):
            box -= _wfg(_unique_front(np.minimum(rest, points[k])))
        total += box
    return total


def hypervolume(
    points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> float:
    """Exact volume dominated by ``points`` and bounded by ``reference``, maximizing.

    The measure of the union of the boxes ``[reference, p]``. Dominated points and duplicates
    add nothing, nor do points that do not strictly beat the reference in every objective
    (their box is empty). Exact in any dimension (the WFG algorithm: exclusive contributions
    over a Pareto-filtered, sorted set, with a 2-D sweep as the base case); meant for the small
    sets of a preference sweep — up to about 100 points in up to about 6 objectives.

    Args:
        points: ``(n, d)`` values, higher is better in every column.
        reference: ``(d,)`` the worst corner (e.g. 0 for :func:`normalized_scores`, or the
            scores of the narrowest configuration).

    Returns:
        The hypervolume (0.0 for no points beating the reference).

    Raises:
        ValueError: ``points`` not ``(n, d)``, ``reference`` not ``(d,)``, or non-finite values.
    """
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or len(ref) == 0:
        raise ValueError(f"reference must be a non-empty 1-D array, got shape {ref.shape}")
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"reference must be finite, got {ref.tolist()}")
    array = _matrix(points)
    if array.size == 0:
        return 0.0
    if array.shape[1] != len(ref):
        raise ValueError(
            f"points have {array.shape[1]} objectives but the reference has {len(ref)}"
        )
    shifted = array - ref
    shifted = shifted[np.all(shifted > 0, axis=1)]
    if len(shifted) == 0:
        return 0.0
    return float(_wfg(_unique_front(shifted)))


def normalized_scores(
    metrics_list: Sequence[Mapping[str, float]],
    tasks: Sequence[str],
    reference_metrics: Mapping[str, float],
) -> np.ndarray:
    """Each task's primary metric as a higher-is-better score relative to a reference model.

    ``score = 1 + s (m - m_ref) / |m_ref|`` with ``s = +1`` where higher is better and ``-1``
    where lower is better (``1 + (ref - m) / ref`` for an error such as depth RMSE): exactly
    ``1 + Δ_t / 100`` for the per-task relative change ``Δ_t`` that :func:`compute_delta_m`
    averages, so the mean score over tasks is ``1 + Δm / 100`` and the reference scores 1 in
    every task. (The ratio ``ref / m`` would not match Δm and is not used.)

    Args:
        metrics_list: one results dict per model/configuration, keyed ``<task>/<metric>`` as
            :class:`MultiTaskMetric` returns them.
        tasks: the tasks, in the order of the returned columns.
        reference_metrics: the reference model's results, keyed the same way (e.g. the widest
            configuration, or single-task baselines written as ``{"depth/rmse": 0.6, ...}``).

    Returns:
        An ``(len(metrics_list), len(tasks))`` array of scores.

    Raises:
        ValueError: no tasks, a task named twice, a results dict or the reference without a
            task's primary metric, or a reference value that is zero or not finite.
        KeyError: an unknown task name.
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("normalized_scores needs at least one task")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task list {tasks} names a task twice")
    reference = primary_metrics(reference_metrics, tasks, "reference_metrics")
    for task, value in reference.items():
        value = float(value)
        if not math.isfinite(value) or value == 0:
            raise ValueError(
                f"reference {get_task(task).primary_metric} of task {task!r} must be a finite "
                f"non-zero number (scores divide by it), got {value!r}"
            )
    signs = [1.0 if get_task(t).higher_is_better else -1.0 for t in tasks]
    scores = np.empty((len(metrics_list), len(tasks)), dtype=float)
    for i, metrics in enumerate(metrics_list):
        values = primary_metrics(metrics, tasks, f"metrics_list[{i}]")
        for j, task in enumerate(tasks):
            ref = float(reference[task])
            scores[i, j] = 1.0 + signs[j] * (float(values[task]) - ref) / abs(ref)
    return scores


def preference_correlation(
    preferences: Sequence[Sequence[float]] | np.ndarray,
    scores: Sequence[Sequence[float]] | np.ndarray,
) -> tuple[list[float], float]:
    """Per-task :func:`spearman` of preferences against scores, and their mean (the paper's).

    Args:
        preferences: ``(n, T)`` — row ``i`` is the ``i``-th sampled preference vector.
        scores: ``(n, T)`` — the scores (or higher-is-better metrics) the search reached for it,
            columns in the same task order.

    Returns:
        ``(per_task, mean)``: one correlation per column (``nan`` where a column is constant)
        and the mean over the defined ones (``nan`` if none is defined).

    Raises:
        ValueError: shapes that differ or are not 2-D, fewer than 2 rows, non-finite values.
    """
    p, s = _matrix(preferences, "preferences"), _matrix(scores, "scores")
    if p.shape != s.shape:
        raise ValueError(f"preferences {p.shape} and scores {s.shape} must have the same shape")
    per_task = [spearman(p[:, j], s[:, j]) for j in range(p.shape[1])]
    defined = [r for r in per_task if not math.isnan(r)]
    return per_task, (float(np.mean(defined)) if defined else float("nan"))
