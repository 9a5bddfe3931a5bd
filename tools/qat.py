"""Quantization-aware fine-tuning: a trained or pruned checkpoint to a verified INT8 Q/DQ graph.

``python tools/qat.py CONFIG CHECKPOINT --out DIR [--iters 200] [--lr-scale 0.1]
[--calib-samples 64] [--method percentile|max] [--eval-samples N] [--shape H W]``

Use it when post-training quantization (``tools/quantize.py``) costs too much accuracy: the
model is fine-tuned with INT8 fake quantization at TensorRT's Q/DQ placement (inputs and
weights of every Conv/Linear; :mod:`vision_mtl.compress.qat`) for ``--iters`` iterations of the
config's own schedule at ``--lr-scale`` times its learning rate, then exported as a Q/DQ graph
through the TensorRT check and ONNX Runtime parity, compared as a quantized graph: a value on a
rounding boundary may round one step the other way in ONNX Runtime's float arithmetic and the
step spreads, so raw outputs must agree within ``--parity-rtol`` (5%) of each output's range and
the metrics within 0.5 points of Δm.

Writes into DIR only (new or empty): ``fp32/`` (the checkpoint exported as it is, and its
post-training INT8 ``model_int8.onnx``), ``qat_start.pth``, ``work/`` (the fine-tuning run; its
checkpoints carry the QAT record, so ``tools/test.py`` and ``tools/export.py`` rebuild the
quantized model from them), ``qat/model.onnx`` + ``model.json`` (the QAT graph for
``deploy/build_engine.py --int8``) and ``qat_report.json``: every metric of fp32, post-training
INT8 and QAT INT8 on the test set with ONNX Runtime, Δm of each INT8 model against fp32, and the
three latencies measured interleaved. Settings, config and checkpoint are checked first.
The run is :func:`vision_mtl.workflows.qat.qat_workflow`.
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from vision_mtl.compress.qat import METHODS, QatError
from vision_mtl.export import DeploymentError
from vision_mtl.export.int8_comparison import Int8ComparisonError
from vision_mtl.export.validate import int_at_least
from vision_mtl.export.verified import ExportCheckError
from vision_mtl.input_size import InputSizeError, add_shape_argument
from vision_mtl.workflows.qat import QatSettings, QatSettingsError, qat_workflow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="new or empty directory for every output")
    parser.add_argument("--iters", type=int_at_least(1), default=200)
    parser.add_argument("--lr-scale", type=float, default=0.1, help="times the config's lr")
    parser.add_argument("--calib-samples", type=int_at_least(1), default=64)
    parser.add_argument("--method", choices=METHODS, default="percentile")
    parser.add_argument(
        "--eval-samples", type=int_at_least(1), default=None, help="default: whole test set"
    )
    parser.add_argument("--parity-samples", type=int_at_least(1), default=8)
    parser.add_argument(
        "--parity-rtol",
        type=float,
        default=0.05,
        help="largest ONNX Runtime vs PyTorch difference, as a fraction of each output's range",
    )
    parser.add_argument("--threads", type=int_at_least(1), default=None)
    parser.add_argument("--runs", type=int_at_least(1), default=50, help="timed rounds")
    add_shape_argument(parser, "export canvas")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    settings = QatSettings(
        out=args.out,
        iters=args.iters,
        lr_scale=args.lr_scale,
        calib_samples=args.calib_samples,
        method=args.method,
        eval_samples=args.eval_samples,
        shape=tuple(args.shape) if args.shape else None,
        parity_samples=args.parity_samples,
        parity_rtol=args.parity_rtol,
        threads=args.threads,
        runs=args.runs,
    )
    try:
        report = qat_workflow(args.config, args.checkpoint, settings, args.cfg_options)
    except (
        QatSettingsError,
        QatError,
        InputSizeError,
        ExportCheckError,
        Int8ComparisonError,
        DeploymentError,
    ) as err:
        raise SystemExit(str(err)) from None
    for name in ("ptq", "qat"):
        print(f"Δm {name} INT8 vs fp32: {report['delta'][name]['multitask/delta_m']:+.3f}")
    for name, figures in report["latency"].items():
        print(f"latency {name:<5} {figures['median_ms']:.2f} ms (median, batch 1)")
    print(f"wrote {args.out}/qat_report.json")
    return report


if __name__ == "__main__":
    main()
