"""Inputs of the published-evaluator fixtures for semseg, human parts and saliency.

``tests/fixtures/published_metrics.json`` holds what the published evaluators computed on these
arrays, run outside this repository: InvPT's ``SemsegMeter`` and ``HumanPartsMeter`` (after its
``AddIgnoreRegions`` transform on the parts ground truth) and MTL-PyTorch's ``SaliencyMeter``.
``test_published_metrics.py`` regenerates the arrays, checks their SHA-256 against the ones
recorded there, and compares vision_mtl's metrics with the recorded figures.

The split is built so that the protocols' differences show: NYUD-like semseg where classes 37-39
occur nowhere (neither in the ground truth nor in a prediction) and class 36 only in a
prediction; parts maps of which two have no person at all; saliency maps of graded quality,
one image with no salient pixel.
"""

from __future__ import annotations

import numpy as np
from seism_inputs import digest

SHAPE = (48, 64)
IMAGES = 6


def _blobs(rng: np.random.Generator, classes: np.ndarray, count: int) -> np.ndarray:
    """A label map of axis-aligned rectangles drawn from ``classes``."""
    h, w = SHAPE
    out = np.full(SHAPE, classes[0], np.uint8)
    for _ in range(count):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        dy, dx = rng.integers(4, h // 2), rng.integers(4, w // 2)
        out[y : y + dy, x : x + dx] = rng.choice(classes)
    return out


def _corrupt(rng: np.random.Generator, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """A prediction: the labels with a shifted copy and random pixels replaced."""
    pred = np.roll(labels, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
    noise = rng.random(SHAPE) < 0.1
    pred[noise] = rng.choice(classes, size=int(noise.sum()))
    return pred


def make_inputs() -> dict[str, list[dict[str, np.ndarray]]]:
    """Per task, a list of ``{'pred', 'gt'}`` pairs (semseg, human_parts, saliency)."""
    rng = np.random.default_rng(7)
    semseg = []
    gt_classes = np.arange(0, 36)  # NYUD-v2's 40 classes; 36-39 never in the ground truth
    for i in range(IMAGES):
        gt = _blobs(rng, gt_classes, 8)
        pred = _corrupt(rng, gt, gt_classes)
        if i == 2:
            pred[:4, :4] = 36  # a class only ever predicted
        gt[rng.random(SHAPE) < 0.05] = 255  # unlabelled pixels
        semseg.append({"pred": pred, "gt": gt})

    parts = []
    for i in range(IMAGES):
        if i in (1, 4):  # no person: the published loaders give an all-background map
            gt = np.zeros(SHAPE, np.uint8)
            pred = _corrupt(rng, _blobs(rng, np.arange(7), 3), np.arange(7))
        else:
            gt = _blobs(rng, np.arange(7), 6)
            pred = _corrupt(rng, gt, np.arange(7))
        parts.append({"pred": pred, "gt": gt})

    saliency = []
    for i in range(IMAGES):
        gt = (_blobs(rng, np.array([0, 1]), 3) if i != 3 else np.zeros(SHAPE, np.uint8)).astype(
            np.uint8
        )
        quality = 0.2 + 0.15 * i
        logits = (2 * gt.astype(np.float64) - 1) * 3 * quality + rng.normal(0, 1, SHAPE)
        # A sigmoid-shaped squashing built from exactly rounded operations only: np.exp's SIMD
        # paths differ in the last bit between CPUs, which changed these arrays' digests.
        prob = 0.5 + 0.5 * logits / (1 + np.abs(logits))
        saliency.append({"pred": prob, "gt": gt})
    return {"semseg": semseg, "human_parts": parts, "saliency": saliency}


def digests() -> dict[str, list[list[str]]]:
    """SHA-256 of every array, per task and image, as ``[pred, gt]``."""
    return {
        task: [[digest(s["pred"]), digest(s["gt"])] for s in samples]
        for task, samples in make_inputs().items()
    }
