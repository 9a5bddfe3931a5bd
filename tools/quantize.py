"""INT8-quantize an exported model and measure what it costs: metrics and latency vs fp32.

``python tools/quantize.py CONFIG EXPORT [--calib-samples 64] [--method percentile]``

EXPORT is the export directory, its ``.onnx`` file or its sidecar. Calibrates ONNX Runtime's
static QDQ quantizer (symmetric INT8, per-channel weights: what TensorRT builds) on images of the
config's training set, checks the INT8 graph for TensorRT, scores fp32 and INT8 on the config's
test set with ONNX Runtime, and prints every metric, their difference, Δm of INT8 against fp32
and both latencies (batch 1, median after warm-up).

Everything is checked before quantizing (the config's tasks, class counts and evaluator against
the export's, every calibration and test image against the canvas, the counts at parsing), and
``<stem>_int8.onnx`` and its sidecar are moved beside the fp32 model only after the INT8 model
passed the TensorRT check and was evaluated: a failure leaves no new file there.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mmengine.config import Config, DictAction

from vision_mtl.apis.runner import load_config, write_json
from vision_mtl.evaluation.multitask import compute_delta_m
from vision_mtl.export import Deployment, DeploymentError, OrtRunner, load_deployment
from vision_mtl.export.parity import build_metric, load_samples, sample_image, score
from vision_mtl.export.quantize import METHODS
from vision_mtl.export.timing import measure_latency
from vision_mtl.export.validate import int_at_least
from vision_mtl.export.verified import ExportCheckError, quantize_verified
from vision_mtl.tasks import get_task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("export", help="export directory, .onnx file or sidecar")
    parser.add_argument("--calib-samples", type=int_at_least(1), default=64)
    parser.add_argument(
        "--eval-samples", type=int_at_least(1), default=None, help="default: whole test set"
    )
    parser.add_argument("--method", choices=sorted(METHODS), default="percentile")
    parser.add_argument("--runs", type=int_at_least(1), default=50, help="timed runs per model")
    parser.add_argument("--warmup", type=int_at_least(0), default=10)
    parser.add_argument(
        "--threads", type=int_at_least(1), default=None, help="ONNX Runtime threads"
    )
    parser.add_argument("--report", help="also write the figures as JSON here")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def evaluate(runner: OrtRunner, samples: list[dict], metric) -> dict[str, float]:
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
    """
    tasks = cfg.model.get("tasks") or {}
    settings = tasks if isinstance(tasks, dict) else {t: {} for t in tasks}
    problem = _differ(f"config {config!r}: model tasks", list(settings), fp32.tasks)
    if problem:
        raise SystemExit(f"{problem}; the sidecar is {str(fp32.sidecar_path)!r}")
    exported = fp32.sidecar.get("num_classes") or {}
    for task, value in settings.items():
        count = (value or {}).get("num_classes")
        if count is not None and task in exported and int(count) != int(exported[task]):
            raise SystemExit(
                f"config {config!r} gives {task} {count} classes, the export "
                f"{str(fp32.sidecar_path)!r} has {exported[task]}"
            )


def check_evaluated_tasks(metric, config: str, fp32: Deployment) -> None:
    """Refuse a test evaluator that scores other tasks than the export predicts."""
    evaluated = list(getattr(metric, "tasks", fp32.tasks))
    problem = _differ(f"config {config!r}: test_evaluator tasks", evaluated, fp32.tasks)
    if problem:
        raise SystemExit(f"{problem}; the sidecar is {str(fp32.sidecar_path)!r}")


def checked_samples(cfg: Config, config: str, fp32: Deployment, split: str, count: int):
    """The first ``count`` samples of a split, each with every task's target and an image the
    export can take; a bad one exits naming the split and sample."""
    try:
        samples, metainfo = load_samples(cfg, split, count)
    except ValueError as err:
        raise SystemExit(f"config {config!r}: {err}") from None
    for i, sample in enumerate(samples):
        name = f"{split} sample {i} of config {config!r}"
        missing = [t for t in fp32.tasks if t not in sample["targets"]]
        if missing:
            raise SystemExit(f"{name} has no target for the exported task(s) {missing}")
        try:
            fp32.check_image(sample_image(sample), name)
        except DeploymentError as err:
            raise SystemExit(str(err)) from None
    return samples, metainfo


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report and Path(args.report).is_dir():
        raise SystemExit(f"--report {args.report!r} is a directory; give a JSON file path")
    cfg: Config = load_config(args.config, args.cfg_options)
    try:
        fp32 = load_deployment(args.export)
    except DeploymentError as err:
        raise SystemExit(str(err)) from None
    # Everything is checked before quantizing, and the INT8 pair is published last.
    check_model_tasks(cfg, args.config, fp32)
    samples, metainfo = checked_samples(cfg, args.config, fp32, "test", args.eval_samples or 10**9)
    check_evaluated_tasks(build_metric(cfg, metainfo, "test"), args.config, fp32)
    calibration, _ = checked_samples(cfg, args.config, fp32, "train", args.calib_samples)
    try:
        runners = {
            "fp32": OrtRunner(fp32, providers=["CPUExecutionProvider"], threads=args.threads)
        }
    except DeploymentError as err:
        raise SystemExit(str(err)) from None
    measured: dict[str, dict] = {}

    def measure(int8_staged: Deployment) -> None:
        """Score and time fp32 and the staged INT8 model; runs before the INT8 files publish."""
        runners["int8"] = OrtRunner(
            int8_staged, providers=["CPUExecutionProvider"], threads=args.threads
        )
        metrics = {
            name: evaluate(runner, samples, build_metric(cfg, metainfo, "test"))
            for name, runner in runners.items()
        }
        primary = {t: f"{t}/{get_task(t).primary_metric}" for t in fp32.tasks}
        absent = [key for key in primary.values() if key not in metrics["fp32"]]
        if absent:
            raise SystemExit(f"the test evaluator of {args.config!r} reports no {absent}")
        baselines = {t: metrics["fp32"][key] for t, key in primary.items()}
        measured.update(metrics=metrics, delta=compute_delta_m(metrics["int8"], baselines))
        batch, _ = fp32.preprocess([sample_image(samples[0])])
        measured["latency"] = {
            name: measure_latency(lambda r=r: r.run(batch), args.warmup, args.runs)
            for name, r in runners.items()
        }

    try:
        int8 = quantize_verified(
            fp32, [sample_image(s) for s in calibration], args.method, before_publish=measure
        )
    except (ExportCheckError, DeploymentError) as err:
        raise SystemExit(str(err)) from None
    out, sidecar_path = int8.onnx_path, int8.sidecar_path
    metrics, latency, delta = measured["metrics"], measured["latency"], measured["delta"]
    print(f"{'metric':<24} {'fp32':>10} {'int8':>10} {'int8-fp32':>10}")
    for key in sorted(metrics["fp32"]):
        a, b = metrics["fp32"][key], metrics["int8"].get(key, float("nan"))
        if np.isscalar(a):
            print(f"{key:<24} {a:>10.4f} {b:>10.4f} {b - a:>+10.4f}")
    ratio = latency["int8"]["median_ms"] / latency["fp32"]["median_ms"]
    print(f"Δm (int8 vs fp32): {delta['multitask/delta_m']:+.3f} points over {len(samples)} images")
    print(
        f"latency, batch 1, median: fp32 {latency['fp32']['median_ms']:.2f} ms, "
        f"int8 {latency['int8']['median_ms']:.2f} ms ({ratio:.2f}x)"
    )
    print(f"wrote {out} and {sidecar_path}")
    report = dict(
        onnx=str(out),
        metrics=metrics,
        delta=delta,
        latency=latency,
        latency_ratio=ratio,
        eval_samples=len(samples),
        calibration=int8.sidecar["quantization"]["calibration"],
    )
    if args.report:
        write_json(report, Path(args.report))
    return report


if __name__ == "__main__":
    main()
