"""The boundary benchmark: hand-made cases, the ported operations, the metric wrapper.

Agreement with the original SEISM code is tested in ``test_seism_fixtures.py``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.morphology import thin as skimage_thin

from vision_mtl.datasets.synthscenes import SynthScenesDataset
from vision_mtl.evaluation import BoundaryMetric, MultiTaskMetric, compute_delta_m
from vision_mtl.evaluation import boundary_ops as ops
from vision_mtl.evaluation import boundary_protocol as protocol

SIZE = 64


def ring(offset: int = 0) -> np.ndarray:
    """A one-pixel circle away from the border (NMS damps the outer 5 pixels)."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(m, (32 + offset, 32), 15, 1, 1)
    return m


def score(pred, gt, **kwargs) -> dict:
    metric = BoundaryMetric(nproc=0, **kwargs)
    metric.process({}, [{"pred": {"edge": pred}, "gt": {"edge": gt}, "meta": {"name": "a"}}])
    return metric.compute_metrics(metric.results)


def test_thresholds_and_radius_follow_the_protocol():
    t = protocol.check_thresholds(protocol.HED_THRESHOLDS)
    assert t.size == 101 and (t[0], t[1], t[50], t[-2], t[-1]) == (0.001, 0.01, 0.5, 0.99, 0.999)
    assert protocol.tolerance_pixels((425, 560), 0.011) == pytest.approx(7.7331, abs=1e-4)
    for bad in ([], [0.5, 0.4], [0.0, 0.5], [0.5, 1.0]):
        with pytest.raises(ValueError, match="thresholds"):
            protocol.check_thresholds(bad)


def test_png_is_written_by_truncation():
    prob = np.array([[0.0, 0.5, 0.999, 1.0, 0.0039]])
    np.testing.assert_array_equal(protocol.to_png(prob), [[0, 127, 254, 255, 0]])


def test_perfect_shifted_and_empty():
    gt = ring()
    # max_dist 0.03 × diagonal 90.5 = 2.7 pixels; the ring is a boundary map already.
    perfect = score(gt.astype(float), gt, max_dist=0.03, gt_format="boundary")
    for key in ("odsF", "oisF"):
        assert perfect[key] == pytest.approx(100.0), key
    # AP: precision 1 over the recall range reached (recall 1 at every threshold): the one
    # distinct recall gives no curve, as SEISM's general_ap (it needs two points).
    assert perfect["AP"] == 0.0
    shifted = score(ring(offset=1).astype(float), gt, max_dist=0.03, gt_format="boundary")
    assert shifted["odsF"] >= 99.0
    far = score(ring(offset=4).astype(float), gt, max_dist=0.03, gt_format="boundary")
    assert far["odsF"] < 50.0  # 4 px > 2.7 px: only pixels near the two crossings match
    empty = score(np.zeros((SIZE, SIZE)), gt, max_dist=0.03)
    assert (empty["odsF"], empty["oisF"], empty["AP"]) == (0.0, 0.0, 0.0)


def test_ground_truth_read_as_a_segmentation():
    """SEISM reads the edge PNG as a label map: seg2bmap of a filled square is its outline."""
    seg = np.zeros((20, 20), np.uint8)
    seg[5:15, 5:15] = 1
    bmap = ops.seg2bmap(seg)
    assert bmap[4, 4:15].all() and bmap[14, 4:15].all()  # half a pixel towards the origin
    assert bmap[4:15, 4].all() and bmap[4:15, 14].all()
    assert bmap.sum() == 40 and not bmap[9, 9]
    # A one-pixel line read as a segmentation has boundaries on both of its sides; thinning
    # brings it back to one line.
    line = np.zeros((20, 20), np.uint8)
    line[10, 2:18] = 1
    band = ops.seg2bmap(line)
    assert band[9, 2:17].all() and band[10, 2:17].all()
    assert protocol.gt_boundaries(line).sum() == pytest.approx(16, abs=1)


def test_seg2bmap_borders_as_bsds():
    seg = np.array([[1, 1, 2], [1, 3, 3], [4, 4, 4]])
    # last row: right neighbour only; last column: lower neighbour only; corner: never.
    expected = np.array([[True, True, True], [True, True, True], [False, False, False]])
    np.testing.assert_array_equal(ops.seg2bmap(seg), expected)


def test_counts_by_hand_without_suppression():
    # 10 ground-truth pixels on a column; 5 predictions on it, confident, 1 far away, weaker.
    gt = np.zeros((40, 40), bool)
    gt[10:20, 20] = True
    nms = np.zeros((40, 40), np.float32)
    nms[10:15, 20] = 0.9
    nms[30, 5] = 0.3
    counts, log = protocol.evaluate_image(nms, gt, np.array([0.2, 0.5]), 0.02)
    # (matched gt, gt, matched predictions, predictions) per threshold
    np.testing.assert_array_equal(counts[:, 0], [5, 10, 5, 6])
    np.testing.assert_array_equal(counts[:, 1], [5, 10, 5, 5])
    scores = protocol.summarize([counts], [0.2, 0.5])
    assert scores["oisP"] == 1.0 and scores["oisR"] == 0.5
    assert scores["oisF"] == pytest.approx(2 / 3)
    assert log.thresholds == 2


def test_threshold_is_strict_and_single_precision():
    """``E > t`` in single precision: 51/255 is not above 0.2 (Octave compares in single)."""
    gt = np.zeros((20, 20), bool)
    gt[10, 5:15] = True
    nms = np.zeros((20, 20), np.float32)
    nms[10, 5:15] = np.float32(51) / np.float32(255)
    counts, _ = protocol.evaluate_image(nms, gt, np.array([0.19, 0.2]), 0.05)
    assert counts[3].tolist() == [10, 0]


def test_summary_follows_seism_general_scripts():
    # Two images, three thresholds; counts (cntR, sumR, cntP, sumP).
    a = np.array([[8, 6, 2], [10, 10, 10], [8, 6, 2], [16, 8, 2]], float)
    b = np.array([[3, 2, 0], [4, 4, 4], [3, 2, 0], [6, 3, 0]], float)
    s = protocol.summarize([a, b], [0.2, 0.5, 0.8])
    rec = np.array([11 / 14, 8 / 14, 2 / 14])
    prec = np.array([11 / 22, 8 / 11, 1.0])  # the last: cntR=2 != 0 and sumP = 2
    f = 2 * prec * rec / (prec + rec)
    assert s["odsF"] == pytest.approx(f.max()) and s["ods_threshold"] == 0.5
    # OIS: image a is best at 0.5 (F 0.6857), image b at 0.5 (0.5714 vs 0.6 at 0.2: no).
    fa = (
        2
        * np.array([0.5, 0.75, 1.0])
        * np.array([0.8, 0.6, 0.2])
        / (np.array([0.5, 0.75, 1.0]) + np.array([0.8, 0.6, 0.2]))
    )
    fb = (
        2
        * np.array([0.5, 2 / 3, 1.0])
        * np.array([0.75, 0.5, 0.0])
        / (np.array([0.5, 2 / 3, 1.0]) + np.array([0.75, 0.5, 0.0]))
    )
    ia, ib = int(np.argmax(np.round(fa, 6))), int(np.argmax(np.round(fb, 6)))
    picked = a[:, ia] + b[:, ib]
    r, p = picked[0] / picked[1], picked[2] / picked[3]
    assert s["oisF"] == pytest.approx(2 * p * r / (p + r))
    # AP: precision interpolated over recall 0..1 in steps of 0.01, outside the range dropped.
    grid = np.arange(101) / 100
    inside = (grid >= rec.min()) & (grid <= rec.max())
    expected = np.interp(grid[inside], rec[::-1], prec[::-1]).sum() / 100
    assert s["AP"] == pytest.approx(expected)


def test_one_to_one_matching_not_dilation():
    # Three predictions side by side (thinning keeps a line) and one ground-truth pixel: one
    # match, and two predictions cannot share it.
    gt = np.zeros((30, 30), bool)
    gt[15, 10] = True
    nms = np.zeros((30, 30), np.float32)
    nms[15, 9:12] = 1.0
    counts, _ = protocol.evaluate_image(nms, gt, np.array([0.5]), 0.1)
    assert counts[0, 0] == 1 and counts[3, 0] == 3


def test_ignored_pixels_are_neither_edges_nor_predictions():
    gt = ring().astype(np.int64)
    pred = gt.astype(float)
    gt[:, 50:] = 255
    pred[55, 55] = 1.0  # a false positive inside the ignored region
    out = score(pred, gt, max_dist=0.03, gt_format="boundary")
    assert out["odsF"] == pytest.approx(100.0)


def test_thin_is_bwmorph_thin():
    """Lam-Lee-Suen thinning to convergence, as bwmorph 'thin' Inf (and scikit-image's thin).

    That our tables equal Octave's bwmorph was checked when the SEISM fixtures were made (their
    thinned maps and counts); scikit-image implements the same algorithm publicly.
    """
    rng = np.random.default_rng(0)
    for i in range(60):
        h, w = rng.integers(5, 80, 2)
        binary = rng.random((h, w)) < rng.random()
        if i % 3 == 0:
            binary = cv2.dilate(binary.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        np.testing.assert_array_equal(ops.thin(binary), skimage_thin(binary))


def test_ported_filters_compute_what_they_claim():
    rng = np.random.default_rng(1)
    image = rng.random((37, 53)).astype(np.float32)
    # convTri: the triangle filter with symmetric borders, up to float32 rounding.
    kernel = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1], np.float64) / 25
    padded = np.pad(image.astype(np.float64), 4, mode="symmetric")
    direct = cv2.sepFilter2D(padded, cv2.CV_64F, kernel, kernel)[4:-4, 4:-4]
    np.testing.assert_allclose(ops.conv_tri(image, 4), direct, atol=2e-6)
    # gradient2 is MATLAB's gradient: central inside, one-sided at the borders.
    gx, gy = ops.gradient2(image)
    ny, nx = np.gradient(image.astype(np.float64))
    np.testing.assert_allclose(gx, nx, atol=1e-6)
    np.testing.assert_allclose(gy, ny, atol=1e-6)
    # NMS keeps the crest of a ridge and damps the 5-pixel border linearly.
    ridge = np.zeros((30, 30), np.float32)
    ridge[:, 14] = 0.6
    ridge[:, 13] = ridge[:, 15] = 0.3
    out = ops.edges_nms(ridge, ops.nms_orientation(ridge))
    assert (out[5:25, 14] == np.float32(0.6)).all() and not out[5:25, 13].any()
    assert out[0, 14] == 0 and out[2, 14] == np.float32(0.6) * np.float32(2 / 5)


def test_worker_processes_give_the_in_process_result():
    data = SynthScenesDataset(split="val", num_samples=3, tasks=["edge"], image_size=(64, 80))
    rng = np.random.default_rng(0)
    samples = []
    for i in range(len(data)):
        gt = data.load_sample(i)["edge"].reshape(64, 80)
        prob = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 1.2) * 2
        prob = np.clip(prob + rng.normal(0, 0.08, gt.shape), 0, 1)
        samples.append({"pred": {"edge": prob}, "gt": {"edge": gt}})
    in_process = BoundaryMetric(nproc=0)
    in_process.process({}, samples)
    pooled = BoundaryMetric(nproc=2)
    pooled.process({}, samples)
    result = in_process.evaluate(len(samples))
    assert pooled.evaluate(len(samples)) == result
    assert 20 < result["edge/odsF"] < 99  # a real, imperfect case


def test_fast_mode_is_labelled_and_makes_delta_m_approximate():
    gt = ring()
    out = score(gt.astype(float), gt, max_dist=0.03, mode="fast", gt_format="boundary")
    assert set(out) == {f"{k}_approx" for k in ("odsF", "oisF", "AP", "odsP", "odsR")} | {
        "ods_threshold_approx"
    }
    assert out["odsF_approx"] == pytest.approx(100.0)
    assert BoundaryMetric(mode="fast").thresholds.tolist() == [0.1, 0.3, 0.5, 0.7, 0.9]
    delta = compute_delta_m(
        {"edge/odsF_approx": 77.0, "normals/mean": 20.0}, {"edge": 70.0, "normals": 20.0}
    )
    assert delta == {
        "edge/delta_approx": pytest.approx(10.0),
        "normals/delta_approx": 0.0,
        "multitask/delta_m_approx": pytest.approx(5.0),
    }


def test_saves_the_png_the_matlab_tool_reads(tmp_path):
    gt = ring()
    prob = gt * 0.5
    metric = BoundaryMetric(nproc=0, save_dir=str(tmp_path / "edge"))
    metric.process({}, [{"pred": {"edge": prob}, "gt": {"edge": gt}, "meta": {"name": "img_1"}}])
    png = cv2.imread(str(tmp_path / "edge" / "img_1.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and png.shape == (SIZE, SIZE)
    assert set(np.unique(png)) == {0, 127}  # (255 × 0.5).astype(uint8): truncated
    assert not list((tmp_path / "edge").glob("*.tmp*"))
    with pytest.raises(KeyError, match=r"meta\['name'\]"):
        metric.process({}, [{"pred": {"edge": prob}, "gt": {"edge": gt}, "meta": {}}])


def test_uint8_predictions_are_the_png_itself():
    gt = ring()
    as_png = score((gt * 200).astype(np.uint8), gt, max_dist=0.03)
    as_prob = score(gt * (200.5 / 255), gt, max_dist=0.03)
    assert as_png == as_prob


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="slow"), "mode must be 'full' or 'fast'"),
        (dict(max_dist=7), r"max_dist .* in \(0, 1\)"),
        (dict(nproc=-1), "nproc must be an integer >= 0"),
        (dict(gt_format="edges"), "gt_format must be one of"),
        (dict(thresholds=[0.5, 0.2]), "strictly increasing"),
        (dict(thresholds=[0, 0.5]), r"values in \(0, 1\)"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BoundaryMetric(**kwargs)


def test_bad_inputs_are_named():
    gt = ring()
    with pytest.raises(ValueError, match="edge.*probabilities"):
        score(gt * 3.0, gt)
    with pytest.raises(ValueError, match="edge.*0/1"):
        score(gt.astype(float), gt * 2)
    with pytest.raises(ValueError, match="edge.*shape"):
        score(np.zeros((SIZE, SIZE + 1)), gt)


def test_multitask_metric_resolves_worker_results():
    gt = ring()
    overrides = {"edge": {"max_dist": 0.03, "nproc": 1, "gt_format": "boundary"}}
    metric = MultiTaskMetric(["edge"], metric_overrides=overrides)
    metric.process({}, [{"pred": {"edge": gt.astype(float)}, "gt": {"edge": gt}}] * 2)
    assert metric.evaluate(2)["edge/odsF"] == pytest.approx(100.0)
