"""INT8-quantize an exported model and measure what it costs: metrics and latency vs fp32.

``python tools/quantize.py CONFIG EXPORT [--calib-samples 64] [--quantizer ort|modelopt]
[--method percentile|minmax|entropy]``

EXPORT is the export directory, its ``.onnx`` file or its sidecar. Calibrates ONNX Runtime's
static QDQ quantizer (symmetric INT8, per-channel weights: what TensorRT builds; or, with
``--quantizer modelopt``, NVIDIA Model Optimizer's ONNX quantizer, whose Q/DQ placement follows
TensorRT's fusion rules — ``pip install -e ".[modelopt]"``) on images of the
config's training set, checks the INT8 graph for TensorRT, scores fp32 and INT8 on the config's
test set with ONNX Runtime, and prints every metric, their difference, Δm of INT8 against fp32
and both latencies (batch 1, median after warm-up, the two models interleaved run by run).

Everything is checked before quantizing (the config's tasks, class counts and evaluator against
the export's, every calibration and test image against the canvas, the counts at parsing), and
``<stem>_int8.onnx`` and its sidecar are moved beside the fp32 model only after the INT8 model
passed the TensorRT check and was evaluated: a failure leaves no new file there. The work is
:func:`vision_mtl.export.int8_comparison.compare_int8`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmengine.config import DictAction

from vision_mtl.apis.runner import load_config, write_json
from vision_mtl.export import DeploymentError, load_deployment
from vision_mtl.export.int8_comparison import (
    Int8ComparisonError,
    compare_int8,
    format_int8_comparison,
)
from vision_mtl.export.validate import int_at_least
from vision_mtl.export.verified import QUANTIZERS, ExportCheckError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("export", help="export directory, .onnx file or sidecar")
    parser.add_argument("--calib-samples", type=int_at_least(1), default=64)
    parser.add_argument(
        "--eval-samples", type=int_at_least(1), default=None, help="default: whole test set"
    )
    parser.add_argument(
        "--quantizer",
        choices=sorted(QUANTIZERS),
        default="ort",
        help="ort: ONNX Runtime's (fused integer kernels on the CPU too); modelopt: NVIDIA "
        "Model Optimizer's (Q/DQ on inputs only, as TensorRT fuses them)",
    )
    parser.add_argument(
        "--method",
        choices=sorted({m for methods, _ in QUANTIZERS.values() for m in methods}),
        default=None,
        help="calibration (default: percentile for ort, entropy for modelopt)",
    )
    parser.add_argument("--runs", type=int_at_least(1), default=50, help="timed runs per model")
    parser.add_argument("--warmup", type=int_at_least(0), default=10)
    parser.add_argument(
        "--threads", type=int_at_least(1), default=None, help="ONNX Runtime threads"
    )
    parser.add_argument("--report", help="also write the figures as JSON here")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report and Path(args.report).is_dir():
        raise SystemExit(f"--report {args.report!r} is a directory; give a JSON file path")
    cfg = load_config(args.config, args.cfg_options)
    try:
        result = compare_int8(
            cfg,
            args.config,
            load_deployment(args.export),
            calib_samples=args.calib_samples,
            eval_samples=args.eval_samples,
            method=args.method,
            threads=args.threads,
            warmup=args.warmup,
            runs=args.runs,
            quantizer=args.quantizer,
        )
    except (Int8ComparisonError, ExportCheckError, DeploymentError) as err:
        raise SystemExit(str(err)) from None
    print("\n".join(format_int8_comparison(result)))
    if args.report:
        write_json(result.report, Path(args.report))
    return result.report


if __name__ == "__main__":
    main()
