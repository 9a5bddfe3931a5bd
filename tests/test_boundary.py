"""The boundary benchmark: hand-made cases, pyEdgeEval agreement, thinning, the metric wrapper."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pyEdgeEval.common.binary_label.calculate_metrics import calculate_metrics
from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold
from pyEdgeEval.preprocess import binary_thin

from vision_mtl.datasets.synthscenes import SynthScenesDataset
from vision_mtl.evaluation import BoundaryMetric, MultiTaskMetric, compute_delta_m
from vision_mtl.evaluation import boundary_protocol as protocol

SIZE = 64


def ring(offset: int = 0) -> np.ndarray:
    """A one-pixel circle away from the border (NMS damps the outer 5 pixels).

    A circle rather than a polygon: suppression removes the apex pixel of a right-angle corner
    (it is no maximum across the corner's bisector), so a perfect square scores 99%, not 100%.
    """
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(m, (32 + offset, 32), 15, 1, 1)
    return m


def score(pred, gt, **kwargs) -> dict:
    metric = BoundaryMetric(nproc=0, **kwargs)
    metric.process({}, [{"pred": {"edge": pred}, "gt": {"edge": gt}, "meta": {"name": "a"}}])
    return metric.compute_metrics(metric.results)


def test_thresholds_and_radius_follow_the_protocol():
    t = protocol.protocol_thresholds()
    assert t.size == 101 and t[0] == pytest.approx(1 / 102) and t[-1] == pytest.approx(101 / 102)
    assert protocol.tolerance_pixels((425, 560), 0.011) == pytest.approx(7.7331, abs=1e-4)
    with pytest.raises(ValueError, match="integer >= 1"):
        protocol.protocol_thresholds(0)


@pytest.mark.parametrize("matcher, slack", [("maximum", 0.0), ("csa", 3.0)])
def test_perfect_shifted_and_empty(matcher, slack):
    """Exact with the maximum matching; the CSA matcher may drop a pair or two of these ~84."""
    gt = ring()
    # max_dist 0.03 × diagonal 90.5 = 2.7 pixels
    perfect = score(gt.astype(float), gt, max_dist=0.03, matcher=matcher)
    for key in ("odsF", "oisF", "AP"):
        assert perfect[key] >= 100.0 - slack - 1e-9, key
    if matcher == "maximum":
        assert perfect["odsF"] == pytest.approx(100.0)
    shifted = score(ring(offset=1).astype(float), gt, max_dist=0.03, matcher=matcher)
    assert shifted["odsF"] >= 99.0 - slack
    far = score(ring(offset=4).astype(float), gt, max_dist=0.03, matcher=matcher)
    assert far["odsF"] < 50.0  # 4 px > 2.7 px: only pixels near the two crossings match
    empty = score(np.zeros((SIZE, SIZE)), gt, max_dist=0.03, matcher=matcher)
    assert (empty["odsF"], empty["oisF"], empty["AP"]) == (0.0, 0.0, 0.0)


def test_counts_by_hand_without_suppression():
    # 10 ground-truth pixels on a column; 5 predictions on it, confident, 1 far away, weaker.
    gt = np.zeros((40, 40), bool)
    gt[10:20, 20] = True
    prob = np.zeros((40, 40))
    prob[10:15, 20] = 0.9
    prob[30, 5] = 0.3
    thresholds = np.array([0.2, 0.5])
    counts, log = protocol.evaluate_image(prob, gt, thresholds, 0.02, apply_nms=False)
    # (matched gt, gt, matched predictions, predictions) per threshold
    np.testing.assert_array_equal(counts[:, 0], [5, 10, 5, 6])
    np.testing.assert_array_equal(counts[:, 1], [5, 10, 5, 5])
    scores = protocol.summarize([counts], thresholds)
    assert scores["oisP"] == 1.0 and scores["oisR"] == 0.5
    assert scores["oisF"] == pytest.approx(2 / 3)
    assert log.thresholds == 2


def test_one_to_one_matching_not_dilation():
    # A three-pixel-wide band around a one-pixel line: thinning leaves one line, so precision
    # stays 1; and two predictions cannot share one ground-truth pixel.
    gt = np.zeros((30, 30), bool)
    gt[15, 10] = True
    prob = np.zeros((30, 30))
    prob[15, 9:12] = 1.0  # three side by side, thinning keeps them (a line, not a blob)
    counts, _ = protocol.evaluate_image(prob, gt, np.array([0.5]), 0.1, apply_nms=False)
    assert counts[0, 0] == 1 and counts[3, 0] == 3  # one match among three predictions


def test_ignored_pixels_are_neither_edges_nor_predictions():
    gt = ring().astype(np.int64)
    pred = gt.astype(float)
    gt[:, 50:] = 255
    pred[55, 55] = 1.0  # a false positive inside the ignored region
    out = score(pred, gt, max_dist=0.03)
    assert out["odsF"] == pytest.approx(100.0)


def test_thin_is_pyedgeeval_binary_thin():
    rng = np.random.default_rng(0)
    for i in range(60):
        h, w = rng.integers(5, 80, 2)
        binary = rng.random((h, w)) < rng.random()
        if i % 3 == 0:
            binary = cv2.dilate(binary.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        np.testing.assert_array_equal(protocol.thin(binary), binary_thin(binary))


def _noisy_prediction(gt: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prob = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 1.2)
    prob = prob / max(float(prob.max()), 1e-6) + rng.normal(0, 0.08, gt.shape)
    return np.clip(prob, 0, 1)


def _pyedgeeval_single(sample: dict):
    return evaluate_boundaries_threshold(
        sample["thresholds"], sample["pred"], sample["gt"], max_dist=sample["max_dist"]
    )


def test_agrees_with_pyedgeeval_evaluator():
    """Same suppressed maps through pyEdgeEval's BSDS-style evaluator and through ours.

    With the CSA matcher both run the same algorithm: odsF and oisF agree to 1e-3 (not exactly:
    the matcher's random outlier graph makes each call a little different). The maximum matching
    is the optimum CSA approximates, so it is never below and only slightly above.
    """
    data = SynthScenesDataset(split="val", num_samples=8, tasks=["edge"], image_size=(96, 128))
    thresholds = protocol.protocol_thresholds()
    ours: dict[str, list] = {"csa": [], "maximum": []}
    jobs = []
    for i in range(len(data)):
        gt = data.load_sample(i)["edge"].reshape(96, 128).astype(bool)
        nms = protocol.suppress(protocol.to_uint8(_noisy_prediction(gt, i))) / 255.0
        jobs.append(dict(name=str(i), pred=nms, gt=gt, thresholds=thresholds, max_dist=0.011))
        for matcher, counts in ours.items():
            counts.append(
                protocol.evaluate_image(
                    nms, gt, thresholds, 0.011, apply_nms=False, matcher=matcher
                )[0]
            )
    _, _, theirs = calculate_metrics(_pyedgeeval_single, list(thresholds), jobs, nproc=1)
    csa = protocol.summarize(ours["csa"], thresholds)
    assert abs(csa["odsF"] - theirs["ODS_f1"]) <= 1e-3
    assert abs(csa["oisF"] - theirs["OIS_f1"]) <= 1e-3
    maximum = protocol.summarize(ours["maximum"], thresholds)
    for mine, key in ((maximum["odsF"], "ODS_f1"), (maximum["oisF"], "OIS_f1")):
        assert theirs[key] - 1e-9 <= mine <= theirs[key] + 3e-3
    assert 0.3 < maximum["odsF"] < 0.99  # a real, imperfect case


def test_worker_processes_give_the_in_process_result():
    data = SynthScenesDataset(split="val", num_samples=3, tasks=["edge"], image_size=(64, 80))
    samples = []
    for i in range(len(data)):
        gt = data.load_sample(i)["edge"].reshape(64, 80)
        samples.append({"pred": {"edge": _noisy_prediction(gt, i)}, "gt": {"edge": gt}})
    in_process = BoundaryMetric(nproc=0)
    in_process.process({}, samples)
    pooled = BoundaryMetric(nproc=2)
    pooled.process({}, samples)
    assert pooled.evaluate(len(samples)) == in_process.evaluate(len(samples))


def test_fast_mode_is_labelled_and_makes_delta_m_approximate():
    gt = ring()
    out = score(gt.astype(float), gt, max_dist=0.03, mode="fast")
    assert set(out) == {f"{k}_approx" for k in ("odsF", "oisF", "AP", "odsP", "odsR")} | {
        "ods_threshold_approx"
    }
    assert out["odsF_approx"] == pytest.approx(100.0)
    assert len(BoundaryMetric(mode="fast").thresholds) == 5
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
    assert set(np.unique(png)) == {0, 128}  # round(0.5 × 255)
    assert not list((tmp_path / "edge").glob("*.tmp*"))
    with pytest.raises(KeyError, match=r"meta\['name'\]"):
        metric.process({}, [{"pred": {"edge": prob}, "gt": {"edge": gt}, "meta": {}}])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="slow"), "mode must be 'full' or 'fast'"),
        (dict(max_dist=7), r"max_dist .* in \(0, 1\)"),
        (dict(nproc=-1), "nproc must be an integer >= 0"),
        (dict(matcher="greedy"), "matcher must be 'maximum' or 'csa'"),
        (dict(thresholds=0), "integer >= 1"),
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
    metric = MultiTaskMetric(["edge"], metric_overrides={"edge": {"max_dist": 0.03, "nproc": 1}})
    metric.process({}, [{"pred": {"edge": gt.astype(float)}, "gt": {"edge": gt}}] * 2)
    assert metric.evaluate(2)["edge/odsF"] == pytest.approx(100.0)
