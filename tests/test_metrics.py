"""Hand-computed checks of every metric in vision_mtl.evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from vision_mtl.evaluation import (
    DEFAULT_THRESHOLDS,
    DepthMetric,
    MultiTaskMetric,
    NormalsMetric,
    SaliencyMetric,
    SegMetric,
    compute_delta_m,
    format_metrics_table,
    median_from_histogram,
)
from vision_mtl.registry import METRICS
from vision_mtl.tasks import TASKS


def sample(**pairs: tuple) -> dict:
    """A data sample ``{'pred': {task: p}, 'gt': {task: g}, 'meta': {}}`` from task=(p, g)."""
    return {
        "pred": {t: torch.as_tensor(np.asarray(p)) for t, (p, _) in pairs.items()},
        "gt": {t: torch.as_tensor(np.asarray(g)) for t, (_, g) in pairs.items()},
        "meta": {},
    }


def run(metric, samples: list[dict]) -> dict:
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


# ---------------------------------------------------------------- semseg
# gt/pred pairs on valid pixels: (0,0) (0,1) (1,1) (1,1) (2,2); the last pixel is ignored.
SEG_GT = np.array([[0, 0, 1], [1, 2, 255]], np.int64)
SEG_PRED = np.array([[0, 1, 1], [1, 2, 0]], np.int64)
# class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1 -> 1
SEG_MIOU = (1 / 2 + 2 / 3 + 1) / 3 * 100


def test_seg_metric_hand_computed():
    out = run(
        SegMetric(num_classes=3, class_names=["wall", "floor", "bed"]),
        [sample(semseg=(SEG_PRED, SEG_GT))],
    )
    assert out["mIoU"] == pytest.approx(SEG_MIOU)
    assert out["aAcc"] == pytest.approx(80.0)  # 4 of 5 valid pixels
    assert out["mAcc"] == pytest.approx((1 / 2 + 1 + 1) / 3 * 100)
    assert out["IoU.wall"] == pytest.approx(50.0)
    assert out["IoU.floor"] == pytest.approx(200 / 3)
    assert out["IoU.bed"] == pytest.approx(100.0)


def test_seg_metric_absent_class_nan_or_zero():
    samples = [sample(semseg=(SEG_PRED, SEG_GT))]
    out = run(SegMetric(num_classes=4), samples)
    assert math.isnan(out["IoU.3"])
    assert out["mIoU"] == pytest.approx(SEG_MIOU)  # nanmean over present classes
    out = run(SegMetric(num_classes=4, absent_class="zero"), samples)
    assert out["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 1 + 0) / 4 * 100)


def test_seg_metric_is_split_level_not_per_image_mean():
    # image 1: class 0 right (IoU_0 = 1); image 2: class 0 gt predicted as 1 (IoU_0 = 0)
    a = sample(semseg=(np.zeros((1, 3), np.int64), np.zeros((1, 3), np.int64)))
    b = sample(semseg=(np.ones((1, 1), np.int64), np.zeros((1, 1), np.int64)))
    out = run(SegMetric(num_classes=2), [a, b])
    assert out["IoU.0"] == pytest.approx(75.0)  # TP 3 / (TP 3 + FN 1)
    assert out["IoU.1"] == pytest.approx(0.0)  # FP only


@pytest.mark.parametrize(
    ("pred", "gt", "match"),
    [
        (np.array([[0, 3]]), np.array([[0, 1]]), "semseg.*prediction value 3"),
        (np.array([[0, -1]]), np.array([[0, 1]]), "semseg.*prediction value -1"),
        (np.array([[0, 1]]), np.array([[0, 7]]), "semseg.*ground-truth label value 7"),
        (np.array([[0.0, 1.0]]), np.array([[0, 1]]), "integer class ids"),
        (np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64), "shape"),
    ],
)
def test_seg_metric_rejects_bad_values(pred, gt, match):
    with pytest.raises(ValueError, match=match):
        SegMetric(num_classes=3).process({}, [sample(semseg=(pred, gt))])


def test_seg_metric_dataset_meta_names_and_count():
    metric = SegMetric(num_classes=3, task="human_parts")
    metric.dataset_meta = {
        "num_classes": {"human_parts": 3},
        "class_names": {"human_parts": ["bg", "head", "torso"]},
    }
    out = run(metric, [sample(human_parts=(SEG_PRED, SEG_GT))])
    assert out["IoU.head"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="human_parts.*3 classes.*has 7"):
        metric.dataset_meta = {"num_classes": {"human_parts": 7}}


def test_standalone_evaluate_prefixes_task_and_clears_results():
    metric = METRICS.build(dict(type="SegMetric", num_classes=3))
    metric.process({}, [sample(semseg=(SEG_PRED, SEG_GT))])
    out = metric.evaluate(1)
    assert out["semseg/mIoU"] == pytest.approx(SEG_MIOU)
    assert metric.results == []


# ---------------------------------------------------------------- depth
def test_depth_rmse_is_pixel_level_over_the_split():
    # image A: one valid pixel, error 1; image B: two valid pixels, error 0; invalid pixels (gt 0)
    # carry wild predictions that must not count.
    a = sample(depth=(np.array([[2.0, 5.0]]), np.array([[1.0, 0.0]])))
    b = sample(depth=(np.array([[2.0, 2.0, 9.0]]), np.array([[2.0, 2.0, 0.0]])))
    out = run(DepthMetric(), [a, b])
    per_image_mean = (1.0 + 0.0) / 2
    assert out["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert out["rmse"] != pytest.approx(per_image_mean)
    assert out["abs_rel"] == pytest.approx(1 / 3)
    assert out["sq_rel"] == pytest.approx(1 / 3)
    assert out["log_rmse"] == pytest.approx(math.sqrt(math.log(2) ** 2 / 3))
    for k in (1, 2, 3):  # ratio 2 fails 1.25, 1.5625 and 1.953
        assert out[f"delta{k}"] == pytest.approx(200 / 3)


def test_depth_clamps_predictions_and_respects_range():
    out = run(DepthMetric(), [sample(depth=(np.array([[-3.0]]), np.array([[1.0]])))])
    assert out["rmse"] == pytest.approx(1.0)  # clamped to 0, not an error of 4
    assert out["delta1"] == 0.0
    assert math.isfinite(out["log_rmse"])
    gt = np.array([[1.0, 90.0]])
    pred = np.array([[1.0, 0.0]])
    out = run(DepthMetric(max_depth=80, task="disparity"), [sample(disparity=(pred, gt))])
    assert out["rmse"] == 0.0
    assert out["delta1"] == 100.0


def test_depth_empty_image_keeps_one_item_and_nan_when_nothing_valid():
    metric = DepthMetric()
    metric.process({}, [sample(depth=(np.ones((2, 2)), np.zeros((2, 2))))])
    assert len(metric.results) == 1
    assert math.isnan(metric.compute_metrics(metric.results)["rmse"])


# ---------------------------------------------------------------- normals
def normals_map(vectors: list) -> np.ndarray:
    """3×1×N map from a list of N 3-vectors."""
    return np.asarray(vectors, np.float64).T[:, None, :]


def test_normals_angles_and_mask():
    up = [0, 0, 1]
    gt = normals_map([up, [0, 0, 2], up, [0, 0, 0]])  # non-unit gt; last pixel invalid
    pred = normals_map([[0, 0, 5], [1, 0, 0], [0, 0, -1], [1, 0, 0]])  # 0°, 90°, 180°, masked
    out = run(NormalsMetric(), [sample(normals=(pred, gt))])
    assert out["mean"] == pytest.approx(90.0)
    assert out["median"] == pytest.approx(90.0, abs=0.05)
    assert out["rmse"] == pytest.approx(math.sqrt((0 + 90**2 + 180**2) / 3))
    assert out["11.25"] == pytest.approx(100 / 3)
    assert out["22.5"] == pytest.approx(100 / 3)
    assert out["30"] == pytest.approx(100 / 3)


def test_normals_median_from_histogram_matches_exact_median():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(3, 41, 37))
    pred = gt / np.linalg.norm(gt, axis=0) + rng.normal(scale=0.4, size=gt.shape)
    metric = NormalsMetric()
    half = 20  # two images, one split
    out = run(
        metric,
        [
            sample(normals=(pred[:, :half], gt[:, :half])),
            sample(normals=(pred[:, half:], gt[:, half:])),
        ],
    )
    g = (gt / np.linalg.norm(gt, axis=0)).reshape(3, -1)
    p = (pred / np.linalg.norm(pred, axis=0)).reshape(3, -1)
    exact = np.degrees(np.arccos(np.clip(np.sum(p * g, axis=0), -1, 1)))
    assert out["median"] == pytest.approx(np.median(exact), abs=0.1)
    assert out["mean"] == pytest.approx(exact.mean(), abs=1e-6)


def test_median_from_histogram_edge_cases():
    counts = np.zeros(3600, np.int64)
    assert math.isnan(median_from_histogram(counts, 0.05))
    counts[0] = 2  # two values in [0, 0.05), two in [90, 90.05): np.median would say 45
    counts[1800] = 2
    assert median_from_histogram(counts, 0.05) == pytest.approx(45.0, abs=0.05)


def test_normals_rejects_channel_last():
    with pytest.raises(ValueError, match="normals.*3×H×W"):
        NormalsMetric().process({}, [sample(normals=(np.ones((4, 5, 3)), np.ones((4, 5, 3))))])


# ---------------------------------------------------------------- saliency
def test_saliency_maxf_by_hand():
    # the ignored pixel predicts 0.99: it would be a false positive if it counted
    pred = np.array([[0.1, 0.4, 0.6, 0.9, 0.7, 0.99]])
    gt = np.array([[0, 1, 1, 1, 0, 255]])
    out = run(SaliencyMetric(thresholds=[0.35, 0.65]), [sample(saliency=(pred, gt))])

    def f_beta(p, r, b2=0.3):
        return (1 + b2) * p * r / (b2 * p + r)

    # t = 0.35: TP 3, FP 1, FN 0; t = 0.65: TP 1, FP 1, FN 2
    f = [f_beta(3 / 4, 1.0), f_beta(1 / 2, 1 / 3)]
    assert out["maxF"] == pytest.approx(max(f) * 100)
    assert out["maxF"] == pytest.approx(0.975 / 1.225 * 100)
    assert out["threshold"] == 0.35
    assert out["max_mIoU"] == pytest.approx(75.0)  # t = 0.35: 3 / (3 + 1 + 0), one image


def test_saliency_threshold_is_inclusive_and_grid_exact():
    assert DEFAULT_THRESHOLDS[5] == 0.3 and len(DEFAULT_THRESHOLDS) == 19
    pred, gt = np.array([[0.5, 0.2]]), np.array([[1, 0]])
    out = run(SaliencyMetric(thresholds=[0.5]), [sample(saliency=(pred, gt))])
    assert out["maxF"] == pytest.approx(100.0)


def test_saliency_sigmoid_quirk_and_empty_prediction():
    pred, gt = np.zeros((2, 2)), np.ones((2, 2), np.int64)
    assert run(SaliencyMetric(), [sample(saliency=(pred, gt))])["maxF"] == 0.0
    # sigmoid(0) = 0.5 passes 0.45 but not 0.55: the InvPT quirk's few effective thresholds
    quirk = SaliencyMetric(thresholds=[0.45, 0.55], protocol="invpt")
    out = run(quirk, [sample(saliency=(pred, gt))])
    assert out["maxF"] == pytest.approx(100.0)
    assert out["threshold"] == 0.45


def test_saliency_max_miou_averages_images_and_protocol_is_checked():
    # image 1: t = 0.5 gives IoU 1/2; image 2 has nothing salient and predicts nothing: IoU 1.
    a = sample(saliency=(np.array([[0.9, 0.1, 0.6]]), np.array([[1, 1, 0]])))
    b = sample(saliency=(np.zeros((1, 3)), np.zeros((1, 3), np.int64)))
    out = run(SaliencyMetric(thresholds=[0.5]), [a, b])
    assert out["max_mIoU"] == pytest.approx((1 / 3 + 1) / 2 * 100)  # TP 1, FP 1, FN 1
    with pytest.raises(ValueError, match="protocol must be one of"):
        SaliencyMetric(protocol="mtpytorch")


def test_saliency_rejects_logits_and_bad_labels():
    with pytest.raises(ValueError, match="saliency.*probabilities"):
        SaliencyMetric().process({}, [sample(saliency=(np.full((2, 2), 3.0), np.ones((2, 2))))])
    with pytest.raises(ValueError, match="saliency.*0/1"):
        SaliencyMetric().process({}, [sample(saliency=(np.zeros((2, 2)), np.full((2, 2), 2)))])


# ---------------------------------------------------------------- multitask
def mt_samples() -> list[dict]:
    depth_a = (np.array([[2.0, 5.0]]), np.array([[1.0, 0.0]]))
    depth_b = (np.array([[2.0, 2.0, 9.0]]), np.array([[2.0, 2.0, 0.0]]))
    seg_b = (np.array([[2]]), np.array([[255]]))  # fully ignored image
    return [
        sample(semseg=(SEG_PRED, SEG_GT), depth=depth_a),
        sample(semseg=seg_b, depth=depth_b),
    ]


def test_multitask_keys_and_delta_m_by_hand():
    metric = MultiTaskMetric(
        ["semseg", "depth"], num_classes={"semseg": 3}, baselines={"semseg": 70.0, "depth": 0.5}
    )
    out = run(metric, mt_samples())
    assert out["semseg/mIoU"] == pytest.approx(SEG_MIOU)
    assert out["depth/rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert {"semseg/aAcc", "semseg/IoU.0", "depth/abs_rel", "depth/delta1"} <= set(out)
    seg_delta = (SEG_MIOU - 70.0) / 70.0 * 100  # higher is better: improvement > 0
    depth_delta = -(math.sqrt(1 / 3) - 0.5) / 0.5 * 100  # lower is better: worse RMSE < 0
    assert seg_delta > 0 > depth_delta
    assert out["semseg/delta"] == pytest.approx(seg_delta)
    assert out["depth/delta"] == pytest.approx(depth_delta)
    assert out["multitask/delta_m"] == pytest.approx((seg_delta + depth_delta) / 2)


def test_multitask_split_batches_and_ranks_match_one_batch():
    def make():
        return MultiTaskMetric(["semseg", "depth"], num_classes={"semseg": 3})

    whole = make()
    whole.process({}, mt_samples())
    assert len(whole.results) == 2  # one item per sample: collect_results truncates by count
    halves = make()
    halves.process({}, mt_samples()[:1])
    halves.process({}, mt_samples()[1:])
    # two "ranks" whose results are gathered by concatenation
    rank0, rank1 = make(), make()
    rank0.process({}, mt_samples()[:1])
    rank1.process({}, mt_samples()[1:])
    expected = whole.compute_metrics(whole.results)
    for results in (halves.results, rank1.results + rank0.results):
        got = whole.compute_metrics(results)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, nan_ok=True)
    assert all(not m.results for m in whole.metrics.values())  # sub-metrics hold nothing


def test_multitask_evaluate_drops_padding_samples():
    metric = MultiTaskMetric(["semseg", "depth"], num_classes={"semseg": 3})
    depth_pad = (np.ones((1, 2)), np.full((1, 2), 7.0))
    bad_pad = sample(semseg=(np.zeros((2, 3), np.int64), SEG_GT), depth=depth_pad)
    metric.process({}, mt_samples() + [bad_pad])
    out = metric.evaluate(2)  # the third sample is the sampler's padding
    assert out["semseg/mIoU"] == pytest.approx(SEG_MIOU)
    assert out["depth/rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert metric.results == []


def test_multitask_overrides_and_registry_build():
    metric = METRICS.build(
        dict(
            type="MultiTaskMetric",
            tasks=["human_parts", "edge"],
            metric_overrides={"human_parts": {"num_classes": 3}, "edge": {"max_dist": 0.1}},
        )
    )
    assert metric.metrics["human_parts"].num_classes == 3
    assert metric.metrics["edge"].max_dist == 0.1
    outline = np.zeros((40, 40), np.int64)
    outline[8:32, 20] = 1  # a line away from the border, which suppression keeps whole
    out = run(
        metric, [sample(human_parts=(SEG_PRED, SEG_GT), edge=(outline.astype(float), outline))]
    )
    assert out["human_parts/mIoU"] == pytest.approx(SEG_MIOU)
    assert out["edge/odsF"] == pytest.approx(100.0)


def test_primary_metrics_of_every_task_are_reported():
    metric = MultiTaskMetric(list(TASKS), num_classes={"semseg": 3, "human_parts": 3})
    gt_n = normals_map([[0, 0, 1]] * 6).reshape(3, 2, 3)
    pairs = dict(
        semseg=(SEG_PRED, SEG_GT),
        human_parts=(SEG_PRED, SEG_GT),
        depth=(np.ones((2, 3)), np.ones((2, 3))),
        disparity=(np.ones((2, 3)), np.ones((2, 3))),
        normals=(gt_n, gt_n),
        edge=(np.eye(2, 3), np.eye(2, 3, dtype=np.int64)),
        saliency=(np.eye(2, 3), np.eye(2, 3, dtype=np.int64)),
    )
    out = run(metric, [sample(**pairs)])
    for name, spec in TASKS.items():
        assert f"{name}/{spec.primary_metric}" in out


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(baselines={"semseg": 50.0, "depth": 0.5, "normals": 20.0}), ValueError, "normals"),
        (dict(baselines={"semseg": 50.0}), ValueError, "missing.*depth"),
        (dict(baselines={"semseg": 50.0, "depth": 0.0}), ValueError, "depth.*non-zero"),
        (dict(metric_overrides={"edge": {}}), ValueError, "edge"),
        (dict(tasks=["semseg", "depht"]), KeyError, "depht"),
        (dict(tasks="semseg"), TypeError, "list"),
    ],
)
def test_multitask_configuration_errors(kwargs, error, match):
    args = dict(tasks=["semseg", "depth"], num_classes={"semseg": 3}) | kwargs
    with pytest.raises(error, match=match):
        MultiTaskMetric(**args)


def test_multitask_takes_class_counts_from_dataset_meta():
    metric = MultiTaskMetric(["semseg", "depth"])
    with pytest.raises(RuntimeError, match="semseg.*num_classes"):
        metric.process({}, mt_samples())
    with pytest.raises(ValueError, match="semseg.*class count"):
        metric.dataset_meta = {"num_classes": {"human_parts": 7}}
    evaluator = Evaluator(metric)  # what mmengine's loops drive
    evaluator.dataset_meta = {
        "num_classes": {"semseg": 3},
        "class_names": {"semseg": ["wall", "floor", "bed"]},
    }
    evaluator.process(mt_samples())
    out = evaluator.evaluate(2)
    assert out["semseg/mIoU"] == pytest.approx(SEG_MIOU)
    assert out["semseg/IoU.floor"] == pytest.approx(200 / 3)
    assert out["depth/rmse"] == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="semseg.*3 classes.*has 4"):
        evaluator.dataset_meta = {"num_classes": {"semseg": 4}}


def test_compute_delta_m_standalone_and_missing_metric():
    out = compute_delta_m(
        {"normals/mean": 18.0, "edge/odsF": 80.0}, {"normals": 20.0, "edge": 80.0}
    )
    assert out["normals/delta"] == pytest.approx(10.0)
    assert out["edge/delta"] == 0.0
    assert out["multitask/delta_m"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="saliency.*saliency/maxF"):
        compute_delta_m({"normals/mean": 18.0}, {"saliency": 80.0})


def test_format_metrics_table():
    model = {"semseg/mIoU": 51.15, "semseg/IoU.wall": 70.0, "depth/rmse": 0.5792}
    trivial = {"semseg/mIoU": 3.2, "multitask/delta_m": -40.0}
    table = format_metrics_table(model, {"model": model, "trivial": trivial})
    lines = table.splitlines()
    assert lines[0].split() == ["task", "metric", "model", "trivial"]
    assert lines[2].split() == ["semseg", "mIoU", "51.1500", "3.2000"]
    assert lines[3].split() == ["depth", "rmse", "0.5792", "-"]
    assert lines[4].split() == ["multitask", "delta_m", "-", "-40.0000"]
    assert len(lines) == 5
    assert "IoU.wall" not in table
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up
    single = format_metrics_table(model, per_class=True).splitlines()
    assert single[0].split() == ["task", "metric", "value"]
    assert single[3].split() == ["IoU.wall", "70.0000"]  # same task: the task cell is blank
    assert format_metrics_table({}) == "(no metrics)"
