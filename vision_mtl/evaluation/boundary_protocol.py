"""The SEISM boundary benchmark for one image, and its ODS/OIS/AP summary.

This is the per-image work of :class:`~vision_mtl.evaluation.BoundaryMetric`: the chain that the
InvPT / TaskPrompter / ATRC repositories run through SEISM (prismformore/
Boundary-Detection-Evaluation-Tools), step by step, with the file each step follows:

1. the sigmoid map is written as an 8-bit PNG by truncation, ``(255 * p).astype(uint8)``
   (the repos' prediction writers), and read back with ``im2single`` (``read_one_cont_png.m``);
2. orientation from the triangle-smoothed map and non-maximum suppression of the *unsmoothed*
   float map, ``edgesNmsMex(E, O, 1, 5, 1.01)`` (``read_one_cont_png.m``; the ports are in
   :mod:`.boundary_ops`);
3. for each threshold of ``parameters/HED.txt`` (0.001, 0.01, 0.02, ..., 0.99, 0.999): the
   binary map ``E > t``, compared in single precision as Octave does (``read_one_cont_png.m``);
4. thinning of that map and of the ground truth, ``bwmorph(seg2bmap(G), 'thin', Inf)``: the
   ground truth is read as a *segmentation* (``edgesEvalImg.m``; for NYUD-v2 the edge PNG itself);
5. one-to-one matching within ``maxDist × image diagonal`` (``correspondPixels``): matched
   ground-truth and predicted pixels, ground-truth and predicted totals (``edgesEvalImg.m``);
6. ODS, OIS and AP over the split (``gather_measure.m``, ``general_ods.m``, ``general_ois.m``,
   ``general_ap.m``): :func:`summarize`.

Step 5 is where the time goes: the BSDS CSA matcher costs 0.1-0.5 s per call on an
NYUD-v2-sized image. :func:`evaluate_image` counts the pairs with a maximum matching instead
(see there), and skips work that cannot change a count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial import cKDTree

from vision_mtl.evaluation import boundary_ops as ops

#: SEISM's ``parameters/HED.txt``: the thresholds the multitask repos evaluate at.
HED_THRESHOLDS = (0.001, *(round(0.01 * i, 2) for i in range(1, 100)), 0.999)

#: The fast validation mode's thresholds, a subset of :data:`HED_THRESHOLDS`.
FAST_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)

#: How the ground truth handed to the metric is read.
GT_FORMATS = ("segmentation", "boundary")


def check_thresholds(thresholds) -> np.ndarray:
    """Thresholds as a strictly increasing float array in (0, 1), or a clear error."""
    values = np.asarray(thresholds, np.float64).ravel()
    if values.size == 0 or not np.all((values > 0) & (values < 1)):
        raise ValueError(
            f"thresholds must be a non-empty list of values in (0, 1), got {thresholds!r}"
        )
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"thresholds must be strictly increasing, got {thresholds!r}")
    return values


def to_png(prob: np.ndarray) -> np.ndarray:
    """A probability map as the published repos write it: ``(255 * p).astype(uint8)``."""
    return (np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)


def suppress(png: np.ndarray, skip_below: float | None = None) -> np.ndarray:
    """``read_one_cont_png``'s map before thresholding: ``im2single``, orientation, NMS (float32).

    ``skip_below`` (see :func:`.boundary_ops.edges_nms`) leaves pixels that no threshold will
    pass unexamined; the thresholded maps are the same.
    """
    edge = png.astype(np.float32) / np.float32(255)  # im2single
    if not edge.any():
        return edge
    return ops.edges_nms(edge, ops.nms_orientation(edge), skip_below=skip_below)


def gt_boundaries(gt: np.ndarray, gt_format: str = "segmentation") -> np.ndarray:
    """The ground truth SEISM matches against: ``thin(seg2bmap(G))``, or ``thin(G)`` for a map
    that already is a one-pixel boundary map (``gt_format='boundary'``)."""
    if gt_format not in GT_FORMATS:
        raise ValueError(f"gt_format must be one of {GT_FORMATS}, got {gt_format!r}")
    bmap = ops.seg2bmap(gt) if gt_format == "segmentation" else np.asarray(gt, bool)
    return ops.thin(bmap)


@dataclass
class MatchLog:
    """How the per-threshold counts of one image were obtained (for profiling and tests)."""

    thresholds: int = 0
    repeated: int = 0  # thinned map identical to the previous threshold's: counts reused
    empty: int = 0  # no prediction or no ground truth within reach: nothing to match
    inherited: int = 0  # a subset of a fully matched prediction: count known without search
    matcher_calls: int = 0  # a max-flow ran

    def add(self, other: MatchLog) -> None:
        """Accumulate another image's log into this one."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def tolerance_pixels(shape: tuple[int, int], max_dist: float) -> float:
    """The matching radius in pixels: ``max_dist × image diagonal``, as ``correspondPixels``."""
    rows, cols = shape
    return float(max_dist) * math.sqrt(rows * rows + cols * cols)


def _pairs(pred_xy: np.ndarray, gt_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(pred index, gt index) of every pair within the radius, by exact integer distance."""
    found = cKDTree(pred_xy).sparse_distance_matrix(
        cKDTree(gt_xy), radius + 1e-6, output_type="coo_matrix"
    )
    i, j = found.row, found.col
    d2 = ((pred_xy[i] - gt_xy[j]) ** 2).sum(axis=1)
    keep = d2 <= radius * radius  # the matcher's own test: a pair is skipped when d² > maxDist²
    return i[keep].astype(np.int64), j[keep].astype(np.int64)


def maximum_matching_size(pred_idx: np.ndarray, gt_idx: np.ndarray) -> int:
    """Size of a maximum matching of the bipartite graph given by its edges (Dinic max-flow).

    scipy's ``maximum_bipartite_matching`` is used nowhere here: on these graphs it sometimes
    takes seconds, where unit-capacity max-flow takes milliseconds.
    """
    if pred_idx.size == 0:
        return 0
    p = _compact(pred_idx)
    g = _compact(gt_idx)
    n1, n2 = int(p.max()) + 1, int(g.max()) + 1
    source, sink = n1 + n2, n1 + n2 + 1
    rows = np.concatenate([np.full(n1, source), p, n1 + np.arange(n2)])
    cols = np.concatenate([np.arange(n1), n1 + g, np.full(n2, sink)])
    graph = csr_matrix(
        (np.ones(rows.size, np.int32), (rows, cols)), shape=(n1 + n2 + 2, n1 + n2 + 2)
    )
    return int(maximum_flow(graph, source, sink, method="dinic").flow_value)


def _compact(index: np.ndarray) -> np.ndarray:
    """Renumber the values of a non-negative index array to 0..n-1 (order kept)."""
    used = np.zeros(int(index.max()) + 1, bool)
    used[index] = True
    return (np.cumsum(used) - 1)[index]


def evaluate_image(
    nms: np.ndarray,
    gt: np.ndarray,
    thresholds: np.ndarray,
    max_dist: float,
) -> tuple[np.ndarray, MatchLog]:
    """Per-threshold boundary counts of one image (``edgesEvalImg`` at each threshold).

    The count at a threshold is the number of one-to-one pairs of predicted and ground-truth
    pixels within the radius, found as the size of a maximum matching of the "within the
    radius" graph (unit-capacity max-flow). The BSDS CSA matcher that SEISM calls minimizes
    ``distance + outlier cost`` with an outlier cost of 100 × the radius, which outweighs any
    distance it could save, so its optimum is a maximum matching too; its sparse random outlier
    graph sometimes gives up a few pairs of that optimum (about 0.1% on NYUD-v2-sized maps,
    varying from call to call), so counts can differ from SEISM's by that much.

    Work that cannot change a count is skipped: a thinned map identical to the previous
    threshold's reuses its counts; a map with no pixel within reach of the other side counts 0;
    a map contained in the previous one, all of whose matchable predicted pixels were matched,
    has all of its own matched (restrict that matching) and needs no search.

    Args:
        nms: the suppressed float32 map (:func:`suppress`).
        gt: the thinned boolean ground-truth boundary map (:func:`gt_boundaries`).
        thresholds: increasing thresholds; a pixel is predicted where ``nms > t``.
        max_dist: matching tolerance as a fraction of the image diagonal.

    Returns:
        A 4×T float64 array (matched gt, gt pixels, matched predictions, predicted pixels) per
        threshold, SEISM's ``(cntR, sumR, cntP, sumP)``, and the image's :class:`MatchLog`.
    """
    gt_xy = np.argwhere(gt)
    radius = tolerance_pixels(gt.shape, max_dist)
    # Octave compares a single-precision map with a double threshold in single precision.
    levels = np.asarray(thresholds, np.float64).astype(np.float32)
    counts = np.zeros((4, len(levels)), np.float64)
    counts[1] = gt_xy.shape[0]
    log = MatchLog(thresholds=len(levels))

    # Every thresholded map lies inside {nms > lowest threshold}: find candidate pairs once.
    cand_xy = np.argwhere(nms > levels[0])
    cand_index = np.full(gt.shape, -1, np.int64)
    cand_index[tuple(cand_xy.T)] = np.arange(cand_xy.shape[0])
    if cand_xy.size and gt_xy.size:
        pair_c, pair_g = _pairs(cand_xy, gt_xy, radius)
    else:
        pair_c = pair_g = np.zeros(0, np.int64)

    previous: np.ndarray | None = None
    previous_saturated = False  # every matchable predicted pixel of the previous map matched
    for i, level in enumerate(levels):
        binary = ops.thin(nms > level)
        if previous is not None and np.array_equal(binary, previous):
            counts[:, i] = counts[:, i - 1]
            log.repeated += 1
            continue
        nested = previous is not None and not np.any(binary & ~previous)
        previous = binary
        counts[3, i] = np.count_nonzero(binary)
        present = np.zeros(cand_xy.shape[0], bool)
        present[cand_index[binary]] = True
        active = present[pair_c]
        pi, gj = pair_c[active], pair_g[active]
        if pi.size == 0:
            log.empty += 1
            previous_saturated = True
            continue
        used = np.zeros(cand_xy.shape[0], bool)
        used[pi] = True  # cheaper than np.unique
        n_pred = int(np.count_nonzero(used))
        if nested and previous_saturated:
            log.inherited += 1
            k = n_pred
        else:
            k = maximum_matching_size(pi, gj)
            log.matcher_calls += 1
        previous_saturated = k == n_pred
        counts[0, i] = counts[2, i] = k
    return counts, log


def _rec_prec(cnt_r, sum_r, cnt_p, sum_p) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision per threshold as ``gather_measure.m`` defines them for the split.

    No ground truth and no match: recall 1, precision 0; no prediction and no match: recall 0,
    precision 1 (applied second); otherwise counts over totals where both are non-zero, and 0
    where the reference leaves its preallocated zeros (no matched ground-truth pixel).
    """
    rec = np.zeros_like(sum_p)
    prec = np.zeros_like(sum_p)
    a = (sum_r == 0) & (cnt_p == 0)
    rec[a], prec[a] = 1.0, 0.0
    b = (sum_p == 0) & (cnt_r == 0)
    rec[b], prec[b] = 0.0, 1.0
    c = (sum_p != 0) & (cnt_r != 0)
    rec[c] = cnt_r[c] / sum_r[c]
    prec[c] = cnt_p[c] / sum_p[c]
    return rec, prec


def _f_measure(prec, rec):
    total = prec + rec
    return np.where(total == 0, 0.0, 2 * prec * rec / np.where(total == 0, 1.0, total))


def _image_f(cnt_r, sum_r, cnt_p, sum_p) -> np.ndarray:
    """Each image's F per threshold as ``eval_cont.m`` computes it and ``eval_method.m`` writes
    it: with ``%f``, six decimals, which is what OIS later takes the maximum of."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(sum_r == 0, 1.0, np.where(sum_p == 0, 0.0, cnt_r / sum_r))
        prec = np.where(sum_r == 0, 0.0, np.where(sum_p == 0, 1.0, cnt_p / sum_p))
    f = _f_measure(prec, rec)
    return np.array([float(f"{v:f}") for v in f.ravel()]).reshape(f.shape)


def summarize(counts: list[np.ndarray] | np.ndarray, thresholds) -> dict[str, float]:
    """ODS, OIS and AP from per-image counts, as SEISM computes them.

    * **ODS** (``general_ods.m``): the counts summed over the split per threshold, the best F
      over thresholds (the first of equal ones), no interpolation between thresholds;
    * **OIS** (``general_ois.m``): each image's counts at the threshold of its best F (six
      decimals, the first of equal ones), summed, then one F;
    * **AP** (``general_ap.m``): the split's precision interpolated linearly over recall at
      ``0, 0.01, ..., 1`` through the thresholds with distinct recalls (the first of each),
      points outside the recall range dropped, the sum divided by 100.

    Returns:
        ``odsF``, ``odsP``, ``odsR``, ``ods_threshold``, ``oisF``, ``oisP``, ``oisR`` and ``AP``,
        as fractions in [0, 1] (the metric turns them into percentages).
    """
    thresholds = np.asarray(thresholds, np.float64)
    stacked = np.asarray(counts, np.float64).reshape(-1, 4, thresholds.size)
    cnt_r, sum_r, cnt_p, sum_p = stacked.sum(axis=0)
    rec, prec = _rec_prec(cnt_r, sum_r, cnt_p, sum_p)
    f = _f_measure(prec, rec)
    ods = int(np.argmax(f))

    per_image = _image_f(*stacked.transpose(1, 0, 2))
    best = np.argmax(per_image, axis=1)
    picked = stacked[np.arange(stacked.shape[0]), :, best].sum(axis=0)
    ois_rec, ois_prec = _rec_prec(*(np.atleast_1d(v) for v in picked))
    ois_f = float(_f_measure(ois_prec, ois_rec)[0])

    ap = 0.0
    _, first = np.unique(rec, return_index=True)  # sorted by recall, first occurrence
    if first.size > 1:
        grid = np.arange(101) / 100.0
        curve = np.interp(grid, rec[first], prec[first], left=np.nan, right=np.nan)
        ap = float(np.nansum(curve) / 100.0)
    return {
        "odsF": float(f[ods]),
        "odsP": float(prec[ods]),
        "odsR": float(rec[ods]),
        "ods_threshold": float(thresholds[ods]),
        "oisF": ois_f,
        "oisP": float(ois_prec[0]),
        "oisR": float(ois_rec[0]),
        "AP": ap,
    }
