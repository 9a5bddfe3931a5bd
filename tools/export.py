"""Export a trained model to ONNX, check it, and only then write it.

``python tools/export.py CONFIG CHECKPOINT --out DIR [--shape H W] [--dynamic N] [--opset 17]
[--simplify]``

Writes ``DIR/model.onnx`` (one file; input ``image``, one output per task), ``DIR/model.json``
(the sidecar runtimes read) and ``DIR/model_reference.npz`` (the first parity images,
preprocessed, for the device self-check). Before anything is written to DIR, the graph must pass:

1. the TensorRT compatibility check (every node, resize modes, dynamic axes; 8.6 and 10.3);
2. parity: ONNX Runtime against PyTorch on ``--parity-samples`` validation images, every task's
   raw outputs within ``--atol`` and equal validation metrics.

A quantization-aware checkpoint (``tools/qat.py``) exports as its Q/DQ graph, its sidecar marked
quantized, and parity compares it as a quantized graph (``--atol`` a fraction of each output's
range, 0.05 by default; metrics within 0.5 points of Δm).

A failed check exits non-zero naming the node or task and leaves DIR without a new file. Bad
arguments (``--parity-samples 0``, ``--dynamic 0``, a negative ``--atol``, a ``--name`` with a
directory part, an unknown ``--trt`` version) are refused while parsing, before any work.
"""

from __future__ import annotations

import argparse
import math
import sys

from mmengine.config import DictAction

from vision_mtl.apis.inference import init_model
from vision_mtl.apis.runner import load_config
from vision_mtl.export.onnx_export import check_export_name
from vision_mtl.export.tensorrt_check import SUPPORTED_OPS
from vision_mtl.export.validate import int_at_least
from vision_mtl.export.verified import ExportCheckError, export_verified
from vision_mtl.input_size import InputSizeError, add_shape_argument, config_input_size


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _stem(text: str) -> str:
    try:
        return check_export_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="a .pth file, or a work dir's last_checkpoint file")
    parser.add_argument("--out", required=True, help="directory for model.onnx and model.json")
    add_shape_argument(parser, "input canvas")
    parser.add_argument(
        "--dynamic",
        type=int_at_least(1),
        metavar="N",
        help="dynamic batch axis, profile range 1..N",
    )
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--trt",
        nargs="+",
        default=["8.6", "10.3"],
        choices=sorted(SUPPORTED_OPS),
        help="TensorRT versions",
    )
    parser.add_argument(
        "--parity-samples",
        type=int_at_least(1),
        default=8,
        help="validation images compared with PyTorch (at least 1)",
    )
    parser.add_argument(
        "--atol",
        type=_tolerance,
        default=None,
        help="parity tolerance: 1e-4 by default; for a QAT checkpoint's Q/DQ graph a fraction of "
        "each output's range, 0.05 by default (docs/deploy.md)",
    )
    parser.add_argument("--name", type=_stem, default="model", help="file stem")
    parser.add_argument(
        "--simplify", action="store_true", help="fold constants and drop redundant nodes"
    )
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    try:  # before the model is built
        canvas = config_input_size(cfg, args.shape, args.config)
    except InputSizeError as err:
        raise SystemExit(str(err)) from None
    model = init_model(cfg, args.checkpoint, device="cpu")
    if args.atol is None:
        args.atol = 1e-4 if model.qat_record is None else 0.05
    try:
        result = export_verified(
            model,
            args.out,
            canvas,
            opset=args.opset,
            max_batch=args.dynamic,
            name=args.name,
            simplify=args.simplify,
            trt_versions=args.trt,
            parity_samples=args.parity_samples,
            atol=args.atol,
        )
    except ExportCheckError as err:
        raise SystemExit(str(err)) from None
    if result.simplified:
        counts = result.simplified
        print(f"simplified: {counts['nodes_before']} -> {counts['nodes_after']} nodes")
    for task, diff in result.parity.max_abs_diff.items():
        print(f"parity {task:<12} max |onnx - torch| = {diff:.2e}")
    deployment = result.deployment
    print(
        f"wrote {deployment.onnx_path} and {deployment.sidecar_path} (canvas {canvas[0]}x{canvas[1]})"
    )
    return dict(
        onnx=str(deployment.onnx_path),
        sidecar=str(deployment.sidecar_path),
        max_abs_diff=result.parity.max_abs_diff,
        metrics=result.parity.onnx_metrics,
    )


if __name__ == "__main__":
    sys.exit(main() and 0)
