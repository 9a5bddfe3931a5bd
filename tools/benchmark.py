"""Latency and throughput of a model on this machine: PyTorch eager, ONNX Runtime fp32 and INT8.

``python tools/benchmark.py CONFIG [CHECKPOINT] [--export DIR] [--batch 1] [--threads N]
[--out benchmark.json]``

Exports the model (``tools/export.py``'s checks included) and quantizes it (``tools/quantize.py``'s
recipe, ``--calib-samples`` training images) into a temporary directory, unless ``--export DIR``
names an existing export (its ``model_int8.onnx`` is used if present). Each backend runs the same
preprocessed batch at the export canvas: median and 90th-percentile latency after warm-up,
throughput in images/s, and achieved GFLOP/s (2 × the model's MACs, counted by
FlopCounterMode) as a fraction of this machine's fp32 matrix-multiply peak, measured here with
torch on the same number of threads. Without CHECKPOINT the weights are random: latency does not
depend on them, but INT8 calibration ranges do, so report trained models.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

import torch
from mmengine.config import DictAction

from vision_mtl.apis.inference import init_model
from vision_mtl.apis.runner import write_json
from vision_mtl.complexity import count_macs
from vision_mtl.export import OrtRunner, export_canvas, load_deployment
from vision_mtl.export.parity import load_samples, sample_image
from vision_mtl.export.timing import measure_latency
from vision_mtl.export.verified import ExportCheckError, export_verified, quantize_verified


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", nargs="?", help="default: random weights")
    parser.add_argument("--export", help="an existing export directory to time")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def matmul_peak_gflops(threads: int, size: int = 2048, runs: int = 10) -> float:
    """fp32 GFLOP/s of a large square matrix product with torch: the machine's practical peak."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        timing = measure_latency(lambda: torch.mm(a, b), warmup=3, runs=runs)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / (timing["min_ms"] * 1e-3) / 1e9


def _export_here(model, args, directory: Path) -> Path:
    """Export and quantize into ``directory`` with the checks tools/export.py runs."""
    max_batch = args.batch if args.batch > 1 else None
    try:
        result = export_verified(
            model, directory, export_canvas(model.cfg), max_batch=max_batch, parity_samples=2
        )
        calibration, _ = load_samples(model.cfg, "train", args.calib_samples)
        quantize_verified(result.deployment, [sample_image(s) for s in calibration])
    except ExportCheckError as err:
        raise SystemExit(str(err)) from None
    return directory


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.batch < 1 or args.threads < 1:
        raise SystemExit(
            f"--batch and --threads must be positive, got {args.batch}, {args.threads}"
        )
    torch.set_num_threads(args.threads)
    model = init_model(args.config, args.checkpoint, device="cpu", cfg_options=args.cfg_options)
    temporary = None
    if args.export:
        directory = Path(args.export)
    else:
        temporary = Path(tempfile.mkdtemp(prefix="vision_mtl-benchmark-"))
        directory = _export_here(model, args, temporary)
    try:
        fp32 = load_deployment(directory / "model.json")
        samples, _ = load_samples(model.cfg, "val", args.batch)
        images = [sample_image(samples[i % len(samples)]) for i in range(args.batch)]
        batch, _ = fp32.preprocess(images)
        declared = fp32.sidecar["input"]["shape"][0]
        if declared != "batch" and declared != args.batch:
            raise SystemExit(
                f"{fp32.sidecar_path} is exported for batch {declared}; export with "
                f"--dynamic {args.batch} or benchmark --batch {declared}"
            )
        macs = count_macs(model, torch.from_numpy(batch), mode="tensor")["total"]
        runners = {"pytorch_eager": None}
        runners["onnxruntime_fp32"] = OrtRunner(
            fp32, providers=["CPUExecutionProvider"], threads=args.threads
        )
        int8_sidecar = directory / "model_int8.json"
        if int8_sidecar.is_file():
            runners["onnxruntime_int8"] = OrtRunner(
                load_deployment(int8_sidecar),
                providers=["CPUExecutionProvider"],
                threads=args.threads,
            )
        tensor = torch.from_numpy(batch)
        results = {}
        for name, runner in runners.items():
            if runner is None:
                with torch.inference_mode():
                    fn = lambda: model(tensor, mode="tensor")  # noqa: E731
                    timing = measure_latency(fn, args.warmup, args.runs)
            else:
                timing = measure_latency(lambda r=runner: r.run(batch), args.warmup, args.runs)
            seconds = timing["median_ms"] / 1e3
            timing["images_per_s"] = args.batch / seconds
            timing["gflops"] = 2 * macs / seconds / 1e9
            results[name] = timing
        peak = matmul_peak_gflops(args.threads)
        for timing in results.values():
            timing["fraction_of_peak"] = timing["gflops"] / peak
        eager = results["pytorch_eager"]["median_ms"]
        fp32_ms = results["onnxruntime_fp32"]["median_ms"]
        ratios = {"onnxruntime_fp32_vs_eager": fp32_ms / eager}
        if "onnxruntime_int8" in results:
            ratios["int8_vs_fp32"] = results["onnxruntime_int8"]["median_ms"] / fp32_ms
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    report = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        input=list(batch.shape),
        macs=macs,
        threads=args.threads,
        matmul_peak_gflops=peak,
        machine=dict(processor=platform.processor() or platform.machine(), cpus=os.cpu_count()),
        results=results,
        ratios=ratios,
        versions=dict(torch=torch.__version__, onnxruntime=_ort_version()),
    )
    print(
        f"input {'x'.join(map(str, batch.shape))}, {macs / 1e9:.3f} GMACs, {args.threads} threads"
    )
    print(f"fp32 matmul peak (torch, {args.threads} threads): {peak:.1f} GFLOP/s")
    print(
        f"{'backend':<18} {'median ms':>10} {'p90 ms':>8} {'img/s':>8} {'GFLOP/s':>8} {'of peak':>8}"
    )
    for name, t in results.items():
        print(
            f"{name:<18} {t['median_ms']:>10.2f} {t['p90_ms']:>8.2f} {t['images_per_s']:>8.1f} "
            f"{t['gflops']:>8.1f} {t['fraction_of_peak']:>8.1%}"
        )
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    if args.out:
        write_json(report, Path(args.out))
    return report


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
