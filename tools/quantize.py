"""INT8-quantize an exported model and measure what it costs: metrics and latency vs fp32.

``python tools/quantize.py CONFIG EXPORT [--calib-samples 64] [--method percentile]``

EXPORT is the export directory, its ``.onnx`` file or its sidecar. Calibrates ONNX Runtime's
static QDQ quantizer (symmetric INT8, per-channel weights: what TensorRT builds) on images of the
config's training set, writes ``<stem>_int8.onnx`` and its sidecar beside the fp32 model, checks
the INT8 graph for TensorRT, then scores fp32 and INT8 on the config's test set with ONNX Runtime
and prints every metric, their difference, Δm of INT8 against fp32 and both latencies
(batch 1, median after warm-up).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from mmengine.config import Config, DictAction

from vision_mtl.apis.runner import load_config, write_json
from vision_mtl.evaluation.multitask import compute_delta_m
from vision_mtl.export import OrtRunner, load_deployment
from vision_mtl.export.parity import build_metric, load_samples, sample_image, score
from vision_mtl.export.quantize import METHODS
from vision_mtl.export.timing import measure_latency
from vision_mtl.export.verified import ExportCheckError, quantize_verified
from vision_mtl.tasks import get_task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("export", help="export directory, .onnx file or sidecar")
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=None, help="default: whole test set")
    parser.add_argument("--method", choices=sorted(METHODS), default="percentile")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument("--report", help="also write the figures as JSON here")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def evaluate(runner: OrtRunner, samples: list[dict], metric) -> dict[str, float]:
    outputs = []
    for sample in samples:
        batch, _ = runner.deployment.preprocess([sample_image(sample)])
        outputs.append(runner.run(batch))
    return score(runner.deployment, samples, outputs, metric)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.calib_samples < 1:
        raise SystemExit(f"--calib-samples must be positive, got {args.calib_samples}")
    cfg: Config = load_config(args.config, args.cfg_options)
    fp32 = load_deployment(args.export)
    calibration, _ = load_samples(cfg, "train", args.calib_samples)
    try:
        int8 = quantize_verified(fp32, [sample_image(s) for s in calibration], args.method)
    except ExportCheckError as err:
        raise SystemExit(str(err)) from None
    out, sidecar_path = int8.onnx_path, int8.sidecar_path

    samples, metainfo = load_samples(cfg, "test", args.eval_samples or 10**9)
    runners = {
        "fp32": OrtRunner(fp32, providers=["CPUExecutionProvider"], threads=args.threads),
        "int8": OrtRunner(int8, providers=["CPUExecutionProvider"], threads=args.threads),
    }
    metrics = {
        name: evaluate(runner, samples, build_metric(cfg, metainfo, "test"))
        for name, runner in runners.items()
    }
    batch, _ = fp32.preprocess([sample_image(samples[0])])
    latency = {
        name: measure_latency(lambda r=r: r.run(batch), args.warmup, args.runs)
        for name, r in runners.items()
    }
    tasks = fp32.tasks
    baselines = {t: metrics["fp32"][f"{t}/{get_task(t).primary_metric}"] for t in tasks}
    delta = compute_delta_m(metrics["int8"], baselines)
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
