"""Controllability measures: Spearman correlation, Pareto fronts, hypervolume, task scores."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vision_mtl.evaluation import compute_delta_m
from vision_mtl.evaluation.pareto import (
    hypervolume,
    normalized_scores,
    pareto_front,
    preference_correlation,
    spearman,
)

# ----------------------------------------------------------------------------- spearman


def test_spearman_hand_computed_without_ties():
    # rank differences 0, 1, 1, 0: rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([0.1, 0.5, 0.2], [1, 9, 4]) == pytest.approx(1.0)  # ranks, not values


def test_spearman_hand_computed_with_ties():
    # y ranks with the tied 7s averaged: [1, 2, 3.5, 5, 3.5]; centred x ranks [-2, -1, 0, 1, 2],
    # centred y ranks [-2, -1, 0.5, 2, 0.5]: rho = 8 / sqrt(10 * 9.5)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    # ties on both sides: x ranks [1.5, 1.5, 3, 4], y ranks [1, 2.5, 2.5, 4]
    # centred: [-1, -1, 0.5, 1.5] and [-1.5, 0, 0, 1.5]: 3.75 / sqrt(4.5 * 4.5)
    assert spearman([0, 0, 1, 2], [3, 5, 5, 9]) == pytest.approx(3.75 / 4.5)


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 20, 50):
        for _ in range(20):
            x, y = rng.integers(0, 4, n), rng.normal(size=n).round(1)
            if len(set(x)) == 1 or len(set(y)) == 1:
                continue
            assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_constant_side_is_nan_and_bad_inputs_raise():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="pair up"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        spearman([1], [2])
    with pytest.raises(ValueError, match="finite"):
        spearman([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="one-dimensional"):
        spearman([[1, 2]], [[1, 2]])


def test_preference_correlation_per_task_and_mean():
    prefs = [[1, 0], [2, 0], [3, 0]]
    scores = [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]
    per_task, mean = preference_correlation(prefs, scores)
    assert per_task[0] == pytest.approx(1.0) and math.isnan(per_task[1])
    assert mean == pytest.approx(1.0)  # the undefined task is left out of the mean
    with pytest.raises(ValueError, match="same shape"):
        preference_correlation(prefs, [[1, 2]])


# ----------------------------------------------------------------------------- pareto front


def test_pareto_front_keeps_non_dominated_points_and_duplicates():
    points = [(1, 3), (2, 2), (3, 1), (1, 1), (2, 2), (0, 3), (3, 1)]
    assert pareto_front(points) == [0, 1, 2, 4, 6]  # (1,1) and (0,3) are dominated
    assert pareto_front([(5.0,)]) == [0]
    assert pareto_front(np.zeros((0, 2))) == []
    with pytest.raises(ValueError, match="2-D"):
        pareto_front([1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(1, float("nan"))])


# ----------------------------------------------------------------------------- hypervolume


def _grid_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact union volume by brute force: every cell of the grid of the points' coordinates."""
    axes = [np.unique(np.concatenate([[r], points[:, j]])) for j, r in enumerate(reference)]
    axes = [a[a >= r] for a, r in zip(axes, reference, strict=True)]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        upper = np.array([a[i + 1] for a, i in zip(axes, cell, strict=True)])
        if np.any(np.all(points >= upper, axis=1)):
            volume += float(np.prod([a[i + 1] - a[i] for a, i in zip(axes, cell, strict=True)]))
    return volume


def test_hypervolume_2d_by_hand():
    points = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume(points, (0, 0)) == pytest.approx(3 * 1 + 2 * 1 + 1 * 1)
    # reference (0.5, 0.5): strips [0.5,1]×2.5 + [1,2]×1.5 + [2,3]×0.5
    assert hypervolume(points, (0.5, 0.5)) == pytest.approx(1.25 + 1.5 + 0.5)
    assert hypervolume([(2, 3)], (1, 1)) == pytest.approx(2.0)
    assert hypervolume([(-1, 5), (3, 0)], (0, 0)) == 0.0  # no point beats the reference
    assert hypervolume([(-1, 5), (1, 1)], (0, 0)) == pytest.approx(1.0)
    assert hypervolume(np.zeros((0, 2)), (0, 0)) == 0.0


def test_hypervolume_3d_by_hand():
    assert hypervolume([(2, 1, 1), (1, 2, 1)], (0, 0, 0)) == pytest.approx(2 + 2 - 1)
    boxes = [(2, 1, 1), (1, 2, 1), (1, 1, 2)]  # inclusion–exclusion: 6 - 3 + 1
    assert hypervolume(boxes, (0, 0, 0)) == pytest.approx(4.0)


def test_hypervolume_3d_matches_monte_carlo():
    rng = np.random.default_rng(123)
    points = rng.random((15, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)  # a concave front, all kept
    reference = np.array([0.0, 0.0, 0.0])
    samples = rng.random((400_000, 3))
    covered = np.zeros(len(samples), dtype=bool)
    for p in points:
        covered |= np.all(samples <= p, axis=1)
    estimate = covered.mean()  # the unit cube has volume 1
    assert hypervolume(points, reference) == pytest.approx(estimate, rel=0.01)


@pytest.mark.parametrize("dims", [2, 3, 4, 5])
def test_hypervolume_equals_brute_force_grid(dims):
    rng = np.random.default_rng(dims)
    for _ in range(5):
        points = rng.integers(1, 6, size=(7, dims)).astype(float)
        reference = rng.integers(0, 2, size=dims).astype(float)
        expected = _grid_hypervolume(points, reference)
        assert hypervolume(points, reference) == pytest.approx(expected)


def test_hypervolume_ignores_dominated_points_duplicates_and_order():
    rng = np.random.default_rng(7)
    front = rng.random((10, 4))
    front /= np.linalg.norm(front, axis=1, keepdims=True)
    reference = np.full(4, -0.1)
    base = hypervolume(front, reference)
    dominated = front[:5] * rng.uniform(0.3, 0.9, size=(5, 4))
    augmented = np.concatenate([front, dominated, front[:3]])[rng.permutation(18)]
    assert hypervolume(augmented, reference) == pytest.approx(base, rel=1e-12)
    assert hypervolume(front[::-1], reference) == pytest.approx(base, rel=1e-12)


def test_hypervolume_validates_shapes():
    with pytest.raises(ValueError, match="3 objectives but the reference has 2"):
        hypervolume([(1, 2, 3)], (0, 0))
    with pytest.raises(ValueError, match="1-D"):
        hypervolume([(1, 2)], [[0, 0]])
    with pytest.raises(ValueError, match="2-D"):
        hypervolume([[[1, 2]]], (0, 0))
    with pytest.raises(ValueError, match="finite"):
        hypervolume([(1, float("inf"))], (0, 0))


# ----------------------------------------------------------------------------- scores


def test_normalized_scores_are_relative_gains_consistent_with_delta_m():
    reference = {"semseg/mIoU": 40.0, "depth/rmse": 0.5, "semseg/pixAcc": 70.0}
    results = [
        {"semseg/mIoU": 44.0, "depth/rmse": 0.6},
        {"semseg/mIoU": 40.0, "depth/rmse": 0.4},
        reference,
    ]
    scores = normalized_scores(results, ["semseg", "depth"], reference)
    # semseg: 44 / 40 (higher is better); depth: 1 + (0.5 - 0.6) / 0.5 (lower is better)
    np.testing.assert_allclose(scores, [[1.1, 0.8], [1.0, 1.2], [1.0, 1.0]])
    baselines = {"semseg": 40.0, "depth": 0.5}
    for row, metrics in zip(scores, results, strict=True):
        delta_m = compute_delta_m(metrics, baselines)["multitask/delta_m"]
        assert row.mean() == pytest.approx(1 + delta_m / 100)


def test_normalized_scores_errors_name_the_problem():
    reference = {"semseg/mIoU": 40.0, "depth/rmse": 0.5}
    with pytest.raises(ValueError, match=r"metrics_list\[1\] reports no \['depth/rmse'\]"):
        normalized_scores([reference, {"semseg/mIoU": 1.0}], ["semseg", "depth"], reference)
    with pytest.raises(ValueError, match=r"reference_metrics reports no \[.normals/mean.\]"):
        normalized_scores([reference], ["semseg", "normals"], reference)
    with pytest.raises(ValueError, match="task 'depth' must be a finite non-zero"):
        normalized_scores([reference], ["depth"], {"depth/rmse": 0.0})
    with pytest.raises(ValueError, match="twice"):
        normalized_scores([reference], ["depth", "depth"], reference)
    with pytest.raises(KeyError):
        normalized_scores([reference], ["no_such_task"], reference)
