"""Quantize an export to INT8 and measure what it costs against fp32: every metric, Δm, latency.

:func:`compare_int8` is what ``tools/quantize.py`` runs. Everything is checked before quantizing
(the config's tasks, class counts and evaluator against the export's, every calibration and test
image against the canvas), and the INT8 pair is scored and timed while still staged:
:func:`~vision_mtl.export.verified.quantize_verified` publishes it beside the fp32 model only
after that, so a failure leaves no new file there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from mmengine.config import Config

from vision_mtl.evaluation.multitask import compute_delta_m, primary_metrics
from vision_mtl.export import Deployment, DeploymentError, OrtRunner
from vision_mtl.export.parity import build_metric, load_samples, sample_image, score
from vision_mtl.export.timing import measure_interleaved
from vision_mtl.export.verified import check_quantizer, quantize_verified

__all__ = [
    "Int8Comparison",
    "Int8ComparisonError",
    "check_evaluated_tasks",
    "check_model_tasks",
    "checked_samples",
    "compare_int8",
    "score_and_time",
    "format_int8_comparison",
]


class Int8ComparisonError(ValueError):
    """The config does not fit the export, or a sample cannot be fed to it."""


@dataclass
class Int8Comparison:
    """The figures ``tools/quantize.py`` reports and the published INT8 deployment."""

    report: dict
    int8: Deployment


def evaluate(runner: OrtRunner, samples: list[dict], metric) -> dict[str, float]:
    """``metric`` over ``samples``, each run alone (batch 1) through ``runner``."""
    outputs = []
    for sample in samples:
        batch, _ = runner.deployment.preprocess([sample_image(sample)])
        outputs.append(runner.run(batch))
    return score(runner.deployment, samples, outputs, metric)


def _differ(what: str, config: Sequence[str], export: Sequence[str]) -> str | None:
    """A sentence naming how two task lists differ, or ``None`` if they hold the same tasks."""
    only_config = [t for t in config if t not in export]
    only_export = [t for t in export if t not in config]
    if not only_config and not only_export:
        return None
    parts = [f"only in the config: {only_config}"] if only_config else []
    parts += [f"only in the export: {only_export}"] if only_export else []
    return (
        f"{what} {list(config)} differ from the export's tasks {list(export)} ({'; '.join(parts)})"
    )


def check_model_tasks(cfg: Config, config: str, fp32: Deployment) -> None:
    """Refuse a config whose model has other tasks or class counts than the export.

    Checked before any data is read or file written: scores computed with such a config would
    be of other tasks, or fail once the INT8 files exist.

    Raises:
        Int8ComparisonError: naming the tasks or class counts that differ.
    """
    tasks = cfg.model.get("tasks") or {}
    settings = tasks if isinstance(tasks, dict) else {t: {} for t in tasks}
    problem = _differ(f"config {config!r}: model tasks", list(settings), fp32.tasks)
    if problem:
        raise Int8ComparisonError(f"{problem}; the sidecar is {str(fp32.sidecar_path)!r}")
    exported = fp32.sidecar.get("num_classes") or {}
    for task, value in settings.items():
        count = (value or {}).get("num_classes")
        if count is not None and task in exported and int(count) != int(exported[task]):
            raise Int8ComparisonError(
                f"config {config!r} gives {task} {count} classes, the export "
                f"{str(fp32.sidecar_path)!r} has {exported[task]}"
            )


def check_evaluated_tasks(metric, config: str, fp32: Deployment) -> None:
    """Refuse a test evaluator that scores other tasks than the export predicts."""
    evaluated = list(getattr(metric, "tasks", fp32.tasks))
    problem = _differ(f"config {config!r}: test_evaluator tasks", evaluated, fp32.tasks)
    if problem:
        raise Int8ComparisonError(f"{problem}; the sidecar is {str(fp32.sidecar_path)!r}")


def checked_samples(cfg: Config, config: str, fp32: Deployment, split: str, count: int):
    """The first ``count`` samples of a split and its metainfo, each sample with every task's
    target and an image the export can take; a bad one raises naming the split and sample."""
    try:
        samples, metainfo = load_samples(cfg, split, count)
    except ValueError as err:
        raise Int8ComparisonError(f"config {config!r}: {err}") from None
    for i, sample in enumerate(samples):
        name = f"{split} sample {i} of config {config!r}"
        missing = [t for t in fp32.tasks if t not in sample["targets"]]
        if missing:
            raise Int8ComparisonError(f"{name} has no target for the exported task(s) {missing}")
        try:
            fp32.check_image(sample_image(sample), name)
        except DeploymentError as err:
            raise Int8ComparisonError(str(err)) from None
    return samples, metainfo


def score_and_time(
    runners: dict[str, OrtRunner],
    samples: list[dict],
    metainfo: dict,
    cfg: Config,
    config: str,
    warmup: int,
    runs: int,
) -> dict:
    """Every runner's test metrics, Δm of each other runner against ``runners['fp32']``, and
    all their latencies on the first sample, timed interleaved run by run.

    Raises:
        Int8ComparisonError: the test evaluator does not report a task's primary metric.
    """
    metrics = {
        name: evaluate(runner, samples, build_metric(cfg, metainfo, "test"))
        for name, runner in runners.items()
    }
    fp32 = runners["fp32"].deployment
    try:
        baselines = primary_metrics(
            metrics["fp32"], fp32.tasks, f"the test evaluator of {config!r}"
        )
    except ValueError as err:
        raise Int8ComparisonError(str(err)) from None
    batch, _ = fp32.preprocess([sample_image(samples[0])])
    fns = {name: lambda r=r: r.run(batch) for name, r in runners.items()}
    return dict(
        metrics=metrics,
        delta={n: compute_delta_m(metrics[n], baselines) for n in runners if n != "fp32"},
        latency=measure_interleaved(fns, warmup, runs),
    )


def compare_int8(
    cfg: Config,
    config: str,
    fp32: Deployment,
    calib_samples: int = 64,
    eval_samples: int | None = None,
    method: str | None = None,
    threads: int | None = None,
    warmup: int = 10,
    runs: int = 50,
    quantizer: str = "ort",
) -> Int8Comparison:
    """Quantize ``fp32``, score both on the config's test set and time both; publish INT8 last.

    Args:
        cfg: the loaded config; ``config`` is its path, named in errors.
        fp32: the exported fp32 model.
        calib_samples: training images calibrating the quantizer.
        eval_samples: test images scored (``None``: the whole test set).
        method: the calibration method (``None``: the quantizer's default;
            :data:`vision_mtl.export.verified.QUANTIZERS`).
        threads: ONNX Runtime threads (``None``: its default).
        warmup: untimed runs before each latency measurement (batch 1).
        runs: timed runs per model.
        quantizer: ``ort`` or ``modelopt`` (:func:`~vision_mtl.export.verified.quantize_verified`).

    Returns:
        the report (``onnx``, ``metrics`` of both, ``delta`` of INT8 against fp32, ``latency``,
        ``latency_ratio``, ``eval_samples``, ``calibration``) and the INT8 deployment.

    Raises:
        Int8ComparisonError: the config does not fit the export or a sample does not fit it.
        ExportCheckError: the INT8 graph would not build in TensorRT.
        DeploymentError: the fp32 model cannot be loaded by ONNX Runtime.
    """
    try:
        method = check_quantizer(quantizer, method)
    except (ValueError, ImportError) as err:
        raise Int8ComparisonError(str(err)) from None
    check_model_tasks(cfg, config, fp32)
    samples, metainfo = checked_samples(cfg, config, fp32, "test", eval_samples or 10**9)
    check_evaluated_tasks(build_metric(cfg, metainfo, "test"), config, fp32)
    calibration, _ = checked_samples(cfg, config, fp32, "train", calib_samples)
    providers = ["CPUExecutionProvider"]
    runners = {"fp32": OrtRunner(fp32, providers=providers, threads=threads)}
    measured: dict[str, dict] = {}

    def measure(int8_staged: Deployment) -> None:
        """Score and time fp32 and the staged INT8 model; runs before the INT8 files publish."""
        runners["int8"] = OrtRunner(int8_staged, providers=providers, threads=threads)
        measured.update(score_and_time(runners, samples, metainfo, cfg, config, warmup, runs))

    int8 = quantize_verified(
        fp32,
        [sample_image(s) for s in calibration],
        method,
        before_publish=measure,
        quantizer=quantizer,
    )
    latency = measured["latency"]
    report = dict(
        onnx=str(int8.onnx_path),
        metrics=measured["metrics"],
        delta=measured["delta"]["int8"],
        latency=latency,
        latency_ratio=latency["int8"]["median_ms"] / latency["fp32"]["median_ms"],
        eval_samples=len(samples),
        calibration=int8.sidecar["quantization"]["calibration"],
        quantizer=quantizer,
    )
    return Int8Comparison(report, int8)


def format_int8_comparison(result: Int8Comparison) -> list[str]:
    """The lines ``tools/quantize.py`` prints: each metric of both, Δm, latency, files written."""
    report = result.report
    metrics, latency = report["metrics"], report["latency"]
    lines = [f"{'metric':<24} {'fp32':>10} {'int8':>10} {'int8-fp32':>10}"]
    for key in sorted(metrics["fp32"]):
        a, b = metrics["fp32"][key], metrics["int8"].get(key, float("nan"))
        if np.isscalar(a):
            lines.append(f"{key:<24} {a:>10.4f} {b:>10.4f} {b - a:>+10.4f}")
    delta = report["delta"]["multitask/delta_m"]
    lines.append(f"Δm (int8 vs fp32): {delta:+.3f} points over {report['eval_samples']} images")
    lines.append(
        f"latency, batch 1, median: fp32 {latency['fp32']['median_ms']:.2f} ms, "
        f"int8 {latency['int8']['median_ms']:.2f} ms ({report['latency_ratio']:.2f}x)"
    )
    lines.append(f"wrote {result.int8.onnx_path} and {result.int8.sidecar_path}")
    return lines
