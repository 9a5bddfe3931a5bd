"""The SEISM/BSDS boundary benchmark for one image, built on pyEdgeEval's NMS and thinning.

This module is the per-image work of :class:`~vision_mtl.evaluation.BoundaryMetric`.

The protocol (what the MATLAB SEISM tool does with the PNGs the multitask repos save):

1. the sigmoid map is stored as an 8-bit image, ``round(255 p)``;
2. non-maximum suppression (Dollár's ``edgesNmsMex`` with ``r=1, s=5, m=1.01``, pyEdgeEval's
   port), whose output is quantized to 8 bits again, as ``nms_process.m`` writes it;
3. for each of the thresholds ``t_i = i / (N + 1)``, ``i = 1..N`` (N = 101): ``nms >= t``, then
   morphological thinning (MATLAB's ``bwmorph(..., 'thin', inf)``);
4. one-to-one matching of predicted and ground-truth pixels within
   ``max_dist × image diagonal``: every matched pair is a true positive on both sides.

Step 4 is where the time goes: the BSDS CSA matcher costs 0.1-0.5 s per call on an
NYUD-v2-sized image and the protocol needs 101 calls per image. :func:`evaluate_image` explains
how the same counts are obtained in a few milliseconds, and keeps the CSA matcher available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial import cKDTree

try:  # pyEdgeEval builds C++ extensions at install time; say so if they are missing.
    from pyEdgeEval._lib import correspond_pixels, nms
    from pyEdgeEval.common.metrics import compute_rec_prec_f1, interpolated_max_scores
    from pyEdgeEval.preprocess import fast_nms
    from pyEdgeEval.preprocess.thin.thin import (
        _lut_mutate_mask,
        _thin_iter_1_lut,
        _thin_iter_2_lut,
    )
except ImportError as err:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        f"the boundary benchmark needs pyEdgeEval with its compiled matcher ({err}); install it "
        "with `pip install pyEdgeEval==0.2.8` (it compiles C++ code: a C++ compiler is required)"
    ) from err

#: Number of thresholds of the published protocol.
FULL_THRESHOLDS = 101

#: The outlier cost of the BSDS matcher (its default; part of the protocol).
OUTLIER_COST = 100.0

# Thinning lookup tables, taken from pyEdgeEval so that :func:`thin` is its ``binary_thin``.
_THIN_LUTS = (_thin_iter_1_lut(), _thin_iter_2_lut())
_THIN_MUTATES = tuple(_lut_mutate_mask(lut) for lut in _THIN_LUTS)
# Neighbour weights of the lookup index (NW=1, N=2, NE=4, W=8, C=16, E=32, SW=64, S=128, SE=256).
_NEIGHBOUR_WEIGHTS = np.array([[1, 2, 4], [8, 16, 32], [64, 128, 256]], np.float32)


def protocol_thresholds(count: int = FULL_THRESHOLDS) -> np.ndarray:
    """The BSDS/SEISM thresholds ``i / (count + 1)`` for ``i = 1..count`` (0 and 1 excluded)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"the number of thresholds must be an integer >= 1, got {count!r}")
    return np.linspace(1.0 / (count + 1), 1.0 - 1.0 / (count + 1), int(count))


def to_uint8(prob: np.ndarray) -> np.ndarray:
    """A probability map as the 8-bit PNG the published code writes: ``round(255 p)``."""
    return np.round(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)


def suppress(prob_u8: np.ndarray, fast: bool = False, floor: float = 0.0) -> np.ndarray:
    """Non-maximum suppression of an 8-bit map, returned as 8 bits (SEISM's ``nms_process``).

    Args:
        prob_u8: the 8-bit boundary map.
        fast: smooth with OpenCV's separable filter instead of scipy's ``convolve2d`` (a third
            faster). The smoothed maps agree to 1e-16, but where pyEdgeEval's gradient is exactly
            0 (flat background) OpenCV's is 1e-17, which turns the orientation there and can
            change a few weak responses. So only the approximate fast mode uses it.
        floor: with ``fast``, smoothed responses below it are zeroed before the suppression
            proper, which then skips them (a third of its time on noisy maps). They could never
            pass a threshold >= floor; they can still change a neighbour's verdict through the
            interpolation along the normal, rarely, which is why the full protocol never does it.
    """
    if not prob_u8.any():  # NMS of an empty map is empty; skip its gradient work
        return prob_u8.copy()
    if not fast:
        return fast_nms(prob_u8, r=1, s=5, m=1.01, half_prec=False, return_as_uint8=True)
    # The steps of pyEdgeEval's fast_nms (Dollár's edgesNms wrapper) with a faster convTri.
    edge = _conv_tri(prob_u8 / 255.0, 1)
    oy, ox = np.gradient(_conv_tri(edge, 4))
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    oxx[oxx == 0] = 1e-5
    orientation = np.mod(np.arctan(oyy * np.sign(-oxy) / oxx), np.pi)
    if floor > 0:
        edge = np.where(edge >= floor, edge, 0.0)
    out = nms(edge, orientation, r=1, s=5, m=1.01)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _conv_tri(image: np.ndarray, r: int) -> np.ndarray:
    """Dollár's ``convTri``: separable triangle filter of radius r, symmetric borders."""
    if r <= 1:
        p = 12 / r / (r + 2) - 2
        kernel = np.array([1.0, p, 1.0]) / (2 + p)
    else:
        kernel = np.array([*range(1, r + 1), r + 1, *range(r, 0, -1)], np.float64) / (r + 1) ** 2
    return cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def thin(binary: np.ndarray) -> np.ndarray:
    """Morphological thinning to convergence, identical to pyEdgeEval's ``binary_thin``.

    Same lookup tables and the same two sub-iterations; the neighbourhood index is computed with
    one ``cv2.filter2D`` on the bounding box of the set pixels instead of nine shifted array sums
    on the whole image, which makes it several times faster. Thinning only looks at 3×3
    neighbourhoods and only ever removes pixels, so working inside the box (plus a zero border)
    gives the same result.
    """
    out = np.zeros(binary.shape, bool)
    rows = np.flatnonzero(binary.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(binary.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    out[y0:y1, x0:x1] = _thin_box(binary[y0:y1, x0:x1])
    return out


def _thin_box(x: np.ndarray) -> np.ndarray:
    # pyEdgeEval's loop: sub-iteration 1, then 2, until a sub-iteration would change nothing.
    x = x.astype(np.uint8)
    while True:
        for lut, mutates in zip(_THIN_LUTS, _THIN_MUTATES, strict=True):
            index = cv2.filter2D(x, cv2.CV_16S, _NEIGHBOUR_WEIGHTS, borderType=cv2.BORDER_CONSTANT)
            if not mutates[index].any():
                return x > 0
            x = lut[index].view(np.uint8)


@dataclass
class MatchLog:
    """How the per-threshold counts of one image were obtained (for profiling and tests)."""

    thresholds: int = 0
    repeated: int = 0  # thinned map identical to the previous threshold's: counts reused
    empty: int = 0  # no prediction or no ground truth within reach: nothing to match
    inherited: int = 0  # a subset of a fully matched prediction: count known without search
    matcher_calls: int = 0  # a matcher ran (max-flow or CSA)
    matcher_pixels: int = 0  # pixels handed to the CSA matcher

    def add(self, other: MatchLog) -> None:
        """Accumulate another image's log into this one."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def tolerance_pixels(shape: tuple[int, int], max_dist: float) -> float:
    """The matching radius in pixels: ``max_dist × image diagonal``, computed as the matcher does."""
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


def _distinct(index: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask of the values present in ``index`` (cheaper than ``np.unique``)."""
    used = np.zeros(size, bool)
    used[index] = True
    return used


def _csa_count(pred_xy: np.ndarray, gt_xy: np.ndarray, radius: float) -> int:
    """Matched pairs by pyEdgeEval's CSA matcher, on the bounding box of the given pixels."""
    corner = np.minimum(pred_xy.min(axis=0), gt_xy.min(axis=0))
    extent = np.maximum(pred_xy.max(axis=0), gt_xy.max(axis=0)) - corner + 1
    crop_pred = np.zeros(tuple(extent), np.float64)
    crop_gt = np.zeros(tuple(extent), np.float64)
    crop_pred[tuple((pred_xy - corner).T)] = 1
    crop_gt[tuple((gt_xy - corner).T)] = 1
    # The matcher scales max_dist by the diagonal of what it is given: rescale so that the
    # radius, and the outlier cost derived from it, stay those of the full image.
    diagonal = math.sqrt(float(extent[0]) ** 2 + float(extent[1]) ** 2)
    match_pred, _, _, _ = correspond_pixels(
        crop_pred, crop_gt, max_dist=radius / diagonal, outlier_cost=OUTLIER_COST
    )
    return int(np.count_nonzero(match_pred > 0))


def evaluate_image(
    prob: np.ndarray,
    gt: np.ndarray,
    thresholds: np.ndarray,
    max_dist: float,
    valid: np.ndarray | None = None,
    apply_nms: bool = True,
    matcher: str = "maximum",
    fast_nms: bool = False,
) -> tuple[np.ndarray, MatchLog]:
    """Per-threshold boundary counts of one image.

    The count at a threshold is the number of one-to-one pairs of predicted and ground-truth
    pixels within the radius. Two matchers give it:

    * ``'maximum'`` (default): the size of a maximum matching of the "within the radius" graph,
      by unit-capacity max-flow (scipy). This is the optimum of the BSDS matcher's objective:
      its outlier cost (100 × the radius) outweighs any distance it could save, so it maximizes
      the number of pairs first and their length only second.
    * ``'csa'``: pyEdgeEval's ``correspond_pixels`` (the BSDS/SEISM C++ matcher) at every
      threshold. It links unmatched pixels through a sparse *random* outlier graph (6 links per
      node, from a global RNG that is never reseeded), which cannot always absorb the optimum's
      leftovers; it then gives up a few pairs. On NYUD-v2-sized maps that is ~0.1% of the pairs,
      varying from call to call on the same input. Use it to reproduce the MATLAB tool's figures
      to the last digit it is stable to; it is several times slower.

    Work that cannot change a count is skipped: a thinned map identical to the previous
    threshold's reuses its counts; a map with no pixel within reach of the other side counts 0;
    with ``'maximum'``, a map contained in the previous one, all of whose matchable predicted
    pixels were matched, has all of its own matched (restrict that matching) and needs no
    search. Inputs to the CSA matcher are cut down to the pixels that have a partner within the
    radius (it drops the others itself) and cropped to their bounding box, with the radius kept.

    Args:
        prob: boundary probability map (H×W, values in [0, 1]) at the original image size, or
            its 8-bit version (:func:`to_uint8`), which is what worker processes are sent.
        gt: boolean ground-truth boundary map (H×W).
        thresholds: increasing thresholds (:func:`protocol_thresholds`).
        max_dist: matching tolerance as a fraction of the image diagonal.
        valid: pixels to score (False where the ground truth is ``ignore``); predictions outside
            it are dropped before suppression. ``None`` scores every pixel.
        apply_nms: suppress non-maxima first (the protocol); off for maps that are thin already.
        matcher: ``'maximum'`` or ``'csa'`` (see above).
        fast_nms: the approximate suppression of :func:`suppress` (fast validation mode).

    Returns:
        A 4×T float64 array (matched gt, gt pixels, matched predictions, predicted pixels) per
        threshold, pyEdgeEval's ``(count_r, sum_r, count_p, sum_p)``, and the image's
        :class:`MatchLog`.
    """
    if matcher not in ("maximum", "csa"):
        raise ValueError(f"matcher must be 'maximum' or 'csa', got {matcher!r}")
    image = prob.copy() if prob.dtype == np.uint8 else to_uint8(prob)
    if valid is not None:
        image[~valid] = 0
    if apply_nms:
        image = suppress(image, fast=fast_nms, floor=float(thresholds[0]) if fast_nms else 0.0)
    gt = np.asarray(gt, bool)
    if valid is not None:
        gt = gt & valid
    gt_xy = np.argwhere(gt)
    radius = tolerance_pixels(gt.shape, max_dist)
    # The 8-bit level from which v / 255 >= t holds, per threshold: compare integers, not floats.
    levels = np.arange(256) / 255.0
    first_level = [int(np.argmax(levels >= t)) if levels[-1] >= t else 256 for t in thresholds]
    counts = np.zeros((4, len(thresholds)), np.float64)
    counts[1] = gt_xy.shape[0]
    log = MatchLog(thresholds=len(thresholds))

    # Every thinned map lies inside {nms >= lowest threshold}: find candidate pairs once.
    cand_xy = np.argwhere(image >= first_level[0])
    cand_index = np.full(gt.shape, -1, np.int64)
    cand_index[tuple(cand_xy.T)] = np.arange(cand_xy.shape[0])
    if cand_xy.size and gt_xy.size:
        pair_c, pair_g = _pairs(cand_xy, gt_xy, radius)
    else:
        pair_c = pair_g = np.zeros(0, np.int64)

    previous: np.ndarray | None = None
    previous_saturated = False  # every matchable predicted pixel of the previous map matched
    for i, level in enumerate(first_level):
        binary = thin(image >= level)
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
        pred_used = _distinct(pi, cand_xy.shape[0])
        n_pred = int(np.count_nonzero(pred_used))
        if matcher == "csa":
            gt_used = _distinct(gj, gt_xy.shape[0])
            k = _csa_count(cand_xy[pred_used], gt_xy[gt_used], radius)
            log.matcher_calls += 1
            log.matcher_pixels += n_pred + int(np.count_nonzero(gt_used))
        elif nested and previous_saturated:
            log.inherited += 1
            k = n_pred
        else:
            k = maximum_matching_size(pi, gj)
            log.matcher_calls += 1
        previous_saturated = k == n_pred
        counts[0, i] = counts[2, i] = k
    return counts, log


def summarize(counts: list[np.ndarray] | np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """ODS, OIS and AP from per-image counts, as the BSDS/SEISM benchmark defines them.

    * **ODS** (optimal dataset scale): the counts are summed over the split per threshold and the
      best F is taken, interpolating linearly between neighbouring thresholds as BSDS does
      (pyEdgeEval's ``interpolated_max_scores``);
    * **OIS** (optimal image scale): each image's counts at its own best threshold, summed;
    * **AP**: the 101-point interpolated average precision, the mean over recall levels
      ``r = 0, 0.01, ..., 1`` of the best precision at recall >= r.

    Returns:
        ``odsF``, ``odsP``, ``odsR``, ``ods_threshold``, ``oisF``, ``oisP``, ``oisR`` and ``AP``,
        as fractions in [0, 1] (the metric turns them into percentages).
    """
    stacked = np.asarray(counts, np.float64).reshape(-1, 4, len(thresholds))
    count_r, sum_r, count_p, sum_p = stacked.sum(axis=0)
    rec, prec, _ = compute_rec_prec_f1(count_r, sum_r, count_p, sum_p)
    ods_t, ods_r, ods_p, ods_f = interpolated_max_scores(thresholds, rec, prec)

    best = np.zeros(4)
    for image in stacked:
        _, _, f1 = compute_rec_prec_f1(*image)
        best += image[:, int(np.argmax(f1))]
    ois_r, ois_p, ois_f = compute_rec_prec_f1(*best)

    levels = np.arange(101) / 100.0
    ap = float(np.mean([np.max(prec[rec >= r], initial=0.0) for r in levels]))
    return {
        "odsF": float(ods_f),
        "odsP": float(ods_p),
        "odsR": float(ods_r),
        "ods_threshold": float(ods_t),
        "oisF": float(ois_f),
        "oisP": float(ois_p),
        "oisR": float(ois_r),
        "AP": ap,
    }
