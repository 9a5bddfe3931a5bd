"""Latency and throughput of a model on this machine: PyTorch eager, ONNX Runtime fp32 and INT8.

``python tools/benchmark.py CONFIG [CHECKPOINT] [--export DIR] [--batch 1] [--threads N]
[--shape H W] [--out benchmark.json]``

Exports the model (``tools/export.py``'s checks included) at the config's input size or
``--shape H W`` (:mod:`vision_mtl.input_size`) and quantizes it (``tools/quantize.py``'s recipe,
``--calib-samples`` training images) into a temporary directory, unless ``--export DIR`` names
an existing export (its ``model_int8.onnx`` is used if present). Each backend runs the same
preprocessed batch at the export canvas, the ONNX Runtime backends interleaved run by run (a
load change hits fp32 and INT8 alike; PyTorch eager on its own, its spinning OpenMP threads
would slow the next run): median and 90th-percentile latency after warm-up,
throughput in images/s, and achieved GFLOP/s (2 × the model's MACs, counted by
FlopCounterMode) as a fraction of this machine's fp32 matrix-multiply peak, measured here with
torch on the same number of threads (:func:`vision_mtl.export.benchmark.benchmark_model`).
Without CHECKPOINT the weights are random: latency does not depend on them, but INT8
calibration ranges do, so report trained models.

``python tools/benchmark.py CONFIG --train [--steps 40] [--block 5] [--warmup N] [--amp]
[--threads N] [--out train.json]`` times training instead: a step of the toolbox's Runner (every
hook, the guarded optimizer wrapper) against a bare PyTorch loop with the same model, batch,
optimizer and data in memory, interleaved in blocks, and the config's dataloader's samples/s
(cold and cached) against what the step consumes
(:mod:`vision_mtl.workflows.train_benchmark`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from mmengine.config import DictAction

from vision_mtl.apis.inference import init_model
from vision_mtl.apis.runner import load_config, write_json
from vision_mtl.export.benchmark import BenchmarkError, benchmark_model, format_benchmark
from vision_mtl.export.verified import ExportCheckError
from vision_mtl.input_size import (
    InputSizeError,
    add_shape_argument,
    config_input_size,
    positive_int,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", nargs="?", help="default: random weights")
    parser.add_argument("--export", help="an existing export directory to time")
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100)
    add_shape_argument(parser, "export canvas")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    train = parser.add_argument_group(
        "--train: a training step of the toolbox's Runner against a bare PyTorch loop "
        "(interleaved), and the dataloader's samples/s against what the step consumes"
    )
    train.add_argument("--train", action="store_true", help="time training, not inference")
    train.add_argument("--steps", type=positive_int, default=40, help="timed steps of each")
    train.add_argument("--block", type=positive_int, default=5, help="steps per interleaved block")
    train.add_argument("--amp", nargs="?", const="auto", choices=["auto", "bf16", "fp16"])
    train.add_argument("--data-batches", type=positive_int, default=40)
    return parser.parse_args(argv)


def train_main(args: argparse.Namespace) -> dict:
    """``--train``: :func:`vision_mtl.workflows.train_benchmark.benchmark_training`."""
    from vision_mtl.workflows.train_benchmark import benchmark_training, format_train_benchmark

    if args.checkpoint or args.export:
        raise SystemExit(
            "--train times training from the config's initial weights: drop CHECKPOINT and --export"
        )
    report = benchmark_training(
        args.config,
        args.cfg_options,
        steps=args.steps,
        warmup=args.warmup,
        block=args.block,
        amp=args.amp,
        data_batches=args.data_batches,
    )
    print("\n".join(format_train_benchmark(report)))
    if args.out:
        write_json(report, Path(args.out))
    return report


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train:
        return train_main(args)
    try:
        cfg = load_config(args.config, args.cfg_options)
        # An export at hand has its canvas; only a new export asks the config (before building).
        canvas = tuple(args.shape) if args.shape else None
        if not args.export:
            canvas = config_input_size(cfg, canvas, args.config)
    except (FileNotFoundError, InputSizeError) as err:
        raise SystemExit(str(err)) from None
    model = init_model(cfg, args.checkpoint, device="cpu")
    try:
        figures = benchmark_model(
            model,
            canvas,
            export_dir=args.export,
            batch=args.batch,
            threads=args.threads,
            calib_samples=args.calib_samples,
            warmup=args.warmup,
            runs=args.runs,
        )
    except (BenchmarkError, ExportCheckError) as err:
        raise SystemExit(str(err)) from None
    report = dict(config=args.config, checkpoint=args.checkpoint, **figures)
    print("\n".join(format_benchmark(report)))
    if args.out:
        write_json(report, Path(args.out))
    return report


if __name__ == "__main__":
    main()
