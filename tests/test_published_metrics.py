"""vision_mtl's metrics against the published evaluators' own outputs on the same arrays.

The figures in ``fixtures/published_metrics.json`` were computed by InvPT's and MTL-PyTorch's
evaluation code itself (at the commits recorded there), run outside this repository on the
arrays of ``metric_reference_inputs.py``; only their outputs are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from metric_reference_inputs import digests, make_inputs

from vision_mtl.datasets.transforms import ignore_background_only
from vision_mtl.evaluation import MultiTaskMetric, SaliencyMetric, SegMetric

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "published_metrics.json").read_text())


@pytest.fixture(scope="module")
def inputs() -> dict:
    # The recorded hashes make sure the figures belong to exactly these arrays.
    assert digests() == REFERENCE["inputs_sha256"], (
        "the fixture inputs changed: re-run the reference"
    )
    return make_inputs()


def scored(metric, task: str, pairs: list[dict]) -> dict:
    samples = [
        {"pred": {task: torch.as_tensor(p["pred"])}, "gt": {task: torch.as_tensor(p["gt"])}}
        for p in pairs
    ]
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_semseg_absent_classes_score_zero_as_invpt(inputs):
    """Classes 37-39 occur nowhere: InvPT counts them as IoU 0 in the mean of all 40."""
    ref = REFERENCE["semseg"]
    ours = scored(SegMetric(num_classes=40, absent_class="zero"), "semseg", inputs["semseg"])
    assert ours["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-9)
    per_class = [ours[f"IoU.{i}"] for i in range(40)]
    np.testing.assert_allclose(per_class, ref["IoU"], atol=1e-9)
    # The other convention leaves them out of the mean, so it must differ here.
    nan = scored(SegMetric(num_classes=40, absent_class="nan"), "semseg", inputs["semseg"])
    assert nan["mIoU"] > ref["mIoU"] + 1


def test_published_dataset_configs_score_absent_classes_as_invpt():
    from mmengine.config import Config

    root = Path(__file__).parents[1] / "configs" / "_base_" / "datasets"
    cases = (("nyud.py", {"semseg": 40}), ("pascal_context.py", {"semseg": 21, "human_parts": 7}))
    for name, tasks in cases:
        cfg = Config.fromfile(str(root / name))
        for evaluator in (cfg.test_evaluator, cfg.val_evaluator):
            kwargs = {k: v for k, v in evaluator.items() if k != "type"}
            metric = MultiTaskMetric(**kwargs, num_classes=tasks)
            for task in tasks:
                assert metric.metrics[task].absent_class == "zero", (name, task)


def test_human_parts_person_free_images_ignored_as_invpt(inputs):
    """Two images without a person: InvPT's AddIgnoreRegions ignores them, as our rule does."""
    ref = REFERENCE["human_parts"]
    pairs = [
        {
            "pred": p["pred"],
            "gt": ignore_background_only({"human_parts": p["gt"].copy()})["human_parts"],
        }
        for p in inputs["human_parts"]
    ]
    assert (pairs[1]["gt"] == 255).all() and (pairs[4]["gt"] == 255).all()
    ours = scored(
        SegMetric(num_classes=7, absent_class="zero", task="human_parts"), "human_parts", pairs
    )
    assert ours["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-9)
    # Scoring them as background instead changes the figure.
    plain = scored(
        SegMetric(num_classes=7, absent_class="zero", task="human_parts"),
        "human_parts",
        inputs["human_parts"],
    )
    assert abs(plain["mIoU"] - ref["mIoU"]) > 1


def test_saliency_mtl_protocol_matches_mtl_pytorch(inputs):
    ref = REFERENCE["saliency"]
    ours = scored(SaliencyMetric(protocol="mtl"), "saliency", inputs["saliency"])
    assert ours["maxF"] == pytest.approx(ref["maxF"], abs=1e-6)
    assert ours["max_mIoU"] == pytest.approx(ref["mIoU"], abs=1e-6)
    standard = scored(SaliencyMetric(), "saliency", inputs["saliency"])
    assert abs(standard["maxF"] - ref["maxF"]) > 0.5  # a different protocol, visibly
