"""BoundaryMetric against the original SEISM code's own outputs (golden fixtures).

``fixtures/seism/seism_reference.json`` was written by SEISM itself (the commit recorded in it),
run under GNU Octave outside this repository on the images of ``seism_inputs.py``: its
per-image, per-threshold counts and its ODS/OIS/AP per group. Only those outputs are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from seism_inputs import digest, make_inputs

from vision_mtl.datasets.pascal_context import seism_edges
from vision_mtl.evaluation import BoundaryMetric
from vision_mtl.evaluation import boundary_protocol as protocol

REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures" / "seism" / "seism_reference.json").read_text()
)


@pytest.fixture(scope="module")
def scored() -> dict:
    """Our per-image counts and per-group summaries for the fixture images."""
    images = make_inputs()
    for item in images:  # the recorded figures belong to exactly these arrays
        recorded = REFERENCE["inputs"][item["id"]]
        assert digest(item["gt"]) == recorded["gt_sha256"], item["id"]
        assert digest(item["pred"]) == recorded["pred_sha256"], item["id"]
    counts, groups = {}, {}
    for group, info in REFERENCE["groups"].items():
        # As the dataset configs score them: NYUD-v2's edge PNG (0/1 after loading) read as a
        # segmentation; PASCAL-Context's seg2bmap of the label map (edge_gt="seism"), thinned.
        gt_format = "segmentation" if group == "nyud" else "boundary"
        metric = BoundaryMetric(max_dist=info["max_dist"], gt_format=gt_format, nproc=0, prefix="")
        for item in (i for i in images if i["group"] == group):
            gt = (item["gt"] > 0).astype(np.uint8) if group == "nyud" else seism_edges(item["gt"])
            counts[item["id"]] = metric.sample_stats(item["pred"], gt)
            metric.results.append(counts[item["id"]])
        groups[group] = metric.compute_metrics(metric.results)
    return {"counts": counts, "groups": groups}


def test_thresholds_are_seisms():
    assert [float(t) for t in REFERENCE["thresholds"]] == list(protocol.HED_THRESHOLDS)


@pytest.mark.parametrize("image", sorted(REFERENCE["images"]))
def test_pixel_counts_equal_and_matches_never_above_seism(scored, image):
    ref = REFERENCE["images"][image]
    cnt_r, sum_r, cnt_p, sum_p = scored["counts"][image]
    # Predicted and ground-truth pixels: equal at every threshold (NMS, threshold, thinning).
    np.testing.assert_array_equal(sum_p, ref["sumP"])
    np.testing.assert_array_equal(sum_r, ref["sumR"])
    # Matched pixels: a maximum matching is never smaller than SEISM's CSA matching, whose
    # random outlier graph gives up a few pairs (up to 8 pixels, 0.3%, between two runs of
    # SEISM itself on these images).
    for ours, theirs in ((cnt_r, ref["cntR"]), (cnt_p, ref["cntP"])):
        theirs = np.asarray(theirs, np.float64)
        assert np.all(ours >= theirs)
        assert np.all(ours - theirs <= np.maximum(0.004 * theirs, 2))


@pytest.mark.parametrize("group", sorted(REFERENCE["groups"]))
def test_matched_counts_within_two_permille_over_the_split(scored, group):
    ids = REFERENCE["groups"][group]["ids"]
    for row, key in ((0, "cntR"), (2, "cntP")):
        ours = sum(scored["counts"][i][row] for i in ids)
        theirs = sum(np.asarray(REFERENCE["images"][i][key], np.float64) for i in ids)
        assert np.all(np.abs(ours - theirs) <= 0.002 * np.maximum(theirs, 1)), key


@pytest.mark.parametrize("group", sorted(REFERENCE["groups"]))
def test_summaries_within_1e3(scored, group):
    ref = REFERENCE["groups"][group]
    ours = scored["groups"][group]
    for key in ("odsF", "oisF", "AP"):
        assert ours[key] / 100 == pytest.approx(ref[key], abs=1e-3), key
    assert ours["ods_threshold"] == pytest.approx(
        float(REFERENCE["thresholds"][ref["ods_index"] - 1]), abs=0.011
    )
