"""Does the exported graph compute what the PyTorch model computes? Checked on real samples.

For the first ``num_samples`` images of the config's validation set, PyTorch (tensor mode) and
the exported graph (through the NumPy runtime's pre- and post-processing) are run on the same
images. Two things must hold: every task's raw outputs agree within ``atol`` (1e-4 for fp32),
and the validation metrics computed from both sets of predictions are equal (to ``metric_tol``,
which absorbs a pixel or two flipped across a threshold or an argmax tie by a 1e-6 difference:
8 images of 96×128 make one pixel 0.001 percentage points).

A quantization-aware model's Q/DQ graph (``quantized=True``) cannot agree that closely: a value
that float arithmetic puts a hair to the other side of a rounding boundary is rounded one INT8
step the other way, and the step spreads through the layers after it (measured on a trained
ResNet-18: up to 1.6% of an output's range on some images, 0 on others). Its raw outputs must
agree within ``atol`` *of each output's range* over the compared images, and its metrics within
``delta_m_tol`` points of Δm against PyTorch's (a threshold-picked figure such as the edge
detector's best threshold may move between nearly equal F-scores, so values are not compared
one by one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.registry import DefaultScope

from vision_mtl.export.runtime import Deployment, OrtRunner
from vision_mtl.registry import DATASETS, METRICS, SCOPE
from vision_mtl.tasks import as_prediction_layout


@dataclass
class ParityReport:
    """Per-task raw-output differences and the metrics computed from each backend."""

    max_abs_diff: dict[str, float]
    torch_metrics: dict[str, float]
    onnx_metrics: dict[str, float]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def load_samples(cfg, split: str, num_samples: int) -> tuple[list[dict], dict]:
    """The first ``num_samples`` packed samples of a config's split, and its metainfo.

    ``split`` is ``train`` (read with the test pipeline: calibration wants images as they are
    deployed, not augmented), ``val`` or ``test``.
    """
    dataset_cfg = dict(cfg[f"{split}_dataloader"].dataset)
    if split == "train":
        dataset_cfg["pipeline"] = list(cfg.test_dataloader.dataset.pipeline)
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(dataset_cfg)
    count = min(num_samples, len(dataset))
    if count < 1:
        raise ValueError(f"the {split} set of the config has no samples")
    return [dataset[i] for i in range(count)], dataset.metainfo


def build_metric(cfg, metainfo: dict, evaluator: str = "val"):
    """The config's ``val_evaluator`` or ``test_evaluator`` (its first metric), ready to use."""
    spec = cfg[f"{evaluator}_evaluator"]
    with DefaultScope.overwrite_default_scope(SCOPE):
        metric = METRICS.build(spec if isinstance(spec, dict) else spec[0])
    metric.dataset_meta = metainfo
    return metric


def sample_image(sample: dict) -> np.ndarray:
    """The H×W×3 uint8 RGB image of a packed sample."""
    return sample["inputs"].numpy().transpose(1, 2, 0)


def score(
    deployment: Deployment, samples: list[dict], outputs: list[dict[str, np.ndarray]], metric
) -> dict[str, float]:
    """Metrics of raw outputs (one dict per sample, batch of one) decoded by the runtime."""
    for sample, raw in zip(samples, outputs, strict=True):
        h, w = sample["inputs"].shape[-2:]
        pred = deployment.postprocess(raw, [(h, w)])[0]
        record = dict(meta=dict(sample["meta"], ori_shape=(h, w)), gt=_ground_truth(sample))
        record["pred"] = _as_predict_layout(pred)
        metric.process({}, [record])
    return metric.evaluate(len(samples))


def _ground_truth(sample: dict) -> dict[str, torch.Tensor]:
    gt = {}
    for task, value in sample["targets"].items():
        gt[task] = as_prediction_layout(value)
    return gt


def _as_predict_layout(pred: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Runtime predictions (normals H×W×3) in the model's ``predict`` layout (3×H×W)."""
    out = {}
    for task, value in pred.items():
        value = value.transpose(2, 0, 1) if value.ndim == 3 else value
        out[task] = torch.from_numpy(np.ascontiguousarray(value))
    return out


@torch.no_grad()
def check_parity(
    model: torch.nn.Module,
    deployment: Deployment,
    cfg,
    num_samples: int = 8,
    atol: float = 1e-4,
    metric_tol: float | None = None,
    onnx_path=None,
    quantized: bool = False,
    delta_m_tol: float = 0.5,
) -> ParityReport:
    """Compare ``model`` with the exported graph on validation samples (see module docstring).

    Args:
        model: the PyTorch model that was exported (eval mode).
        deployment: the exported pair, loaded with :func:`~vision_mtl.export.runtime.load_deployment`.
        cfg: the config, for its validation set and evaluator.
        num_samples: how many validation images to compare on.
        atol: largest allowed absolute difference of any raw output.
        metric_tol: largest allowed absolute difference of any metric value; default 1e-3
            plus two pixels' worth of a percentage over the compared images (a pixel whose
            angle or probability sits on a threshold may flip at a 1e-6 difference).
        onnx_path: a graph to run instead of the deployment's (e.g. a quantized one).
        quantized: the graph is a quantization-aware model's Q/DQ graph: ``atol`` is a
            fraction of each output's range, and the metrics are compared by Δm within
            ``delta_m_tol`` points (module docstring).
    """
    model = model.cpu().eval()
    runner = OrtRunner(deployment, onnx_path=onnx_path, providers=["CPUExecutionProvider"])
    samples, metainfo = load_samples(cfg, "val", num_samples)
    diffs = {t: 0.0 for t in deployment.tasks}
    ranges = {t: (np.inf, -np.inf) for t in deployment.tasks}
    raw: dict[str, list] = {"torch": [], "onnx": []}
    for sample in samples:
        batch, _ = deployment.preprocess([sample_image(sample)])
        expected = {t: v.numpy() for t, v in model(torch.from_numpy(batch), mode="tensor").items()}
        got = runner.run(batch)
        for task in deployment.tasks:
            diffs[task] = max(diffs[task], float(np.abs(expected[task] - got[task]).max()))
            low, high = ranges[task]
            ranges[task] = (
                min(low, float(expected[task].min())),
                max(high, float(expected[task].max())),
            )
        raw["torch"].append(expected)
        raw["onnx"].append(got)
    scores = {
        name: score(deployment, samples, outputs, build_metric(cfg, metainfo))
        for name, outputs in raw.items()
    }
    if metric_tol is None:
        pixels = sum(int(np.prod(s["inputs"].shape[-2:])) for s in samples)
        metric_tol = 1e-3 + 200.0 / pixels
    if quantized:
        return _quantized_report(diffs, ranges, scores, deployment.tasks, atol, delta_m_tol)
    failures = [
        f"{task}: max |onnx - torch| = {diff:.3g} > {atol:g}"
        for task, diff in diffs.items()
        if not diff <= atol
    ]
    for key, value in scores["torch"].items():
        other = scores["onnx"].get(key)
        if not _metrics_agree(other, value, metric_tol):
            failures.append(f"{key}: {other} (onnx) vs {value} (torch), tolerance {metric_tol:.2g}")
    return ParityReport(diffs, scores["torch"], scores["onnx"], failures)


def _quantized_report(diffs, ranges, scores, tasks, rtol: float, delta_m_tol: float):
    """The parity report of a Q/DQ graph: differences relative to range, metrics by Δm."""
    from vision_mtl.evaluation.multitask import compute_delta_m, primary_metrics

    failures = []
    for task, diff in diffs.items():
        span = max(ranges[task][1] - ranges[task][0], np.finfo(np.float32).tiny)
        if not diff <= rtol * span:
            failures.append(
                f"{task}: max |onnx - torch| = {diff:.3g} > {rtol:g} of the output range {span:.3g}"
            )
    # a validation evaluator may score a task approximately (edge/odsF_approx): the same
    # approximation on both sides is what is compared
    torch_scores, onnx_scores = (_exact_names(scores[name]) for name in ("torch", "onnx"))
    try:
        baselines = primary_metrics(torch_scores, tasks, "the PyTorch model's metrics")
        delta = compute_delta_m(onnx_scores, baselines)["multitask/delta_m"]
    except (KeyError, ValueError) as err:
        failures.append(f"metrics: {err}")
    else:
        if not abs(delta) <= delta_m_tol:
            failures.append(f"Δm of onnx against torch = {delta:+.3f} (beyond ±{delta_m_tol:g})")
    return ParityReport(diffs, scores["torch"], scores["onnx"], failures)


def _exact_names(metrics: dict) -> dict:
    """``metrics`` plus each ``<key>_approx`` value under ``<key>`` where that is absent."""
    out = dict(metrics)
    for key, value in metrics.items():
        if key.endswith("_approx"):
            out.setdefault(key.removesuffix("_approx"), value)
    return out


def _metrics_agree(onnx_value, torch_value, tolerance: float) -> bool:
    """Equal within ``tolerance``; NaN in both agrees (a class in none of the compared images)."""
    if onnx_value is None:
        return False
    if np.isnan(onnx_value) and np.isnan(torch_value):
        return True
    return abs(onnx_value - torch_value) <= tolerance
