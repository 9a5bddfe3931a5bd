"""Latency and throughput of a model on this machine: PyTorch eager, ONNX Runtime fp32 and INT8.

:func:`benchmark_model` is what ``tools/benchmark.py`` runs. Each backend runs the same
preprocessed batch of validation images at the export canvas: median and 90th-percentile
latency after warm-up, throughput in images/s, and achieved GFLOP/s (2 × the model's MACs,
counted by FlopCounterMode) as a fraction of this machine's fp32 matrix-multiply peak
(:func:`matmul_peak_gflops`, measured with torch on the same number of threads).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from vision_mtl.complexity import count_macs
from vision_mtl.export import OrtRunner, load_deployment
from vision_mtl.export.parity import load_samples, sample_image
from vision_mtl.export.timing import measure_interleaved, measure_latency
from vision_mtl.export.verified import export_verified, quantize_verified

__all__ = [
    "BenchmarkError",
    "benchmark_model",
    "export_for_benchmark",
    "format_benchmark",
    "matmul_peak_gflops",
]


class BenchmarkError(ValueError):
    """The settings, or an export, do not allow the benchmark asked for."""


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


def export_for_benchmark(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    canvas: tuple[int, int],
    batch: int = 1,
    calib_samples: int = 64,
) -> Path:
    """Export and quantize into ``directory`` with the checks ``tools/export.py`` runs.

    Calibration uses ``calib_samples`` training images (``tools/quantize.py``'s recipe); a
    ``batch`` above 1 exports a dynamic batch axis up to it.

    Raises:
        ExportCheckError: the graph failed the TensorRT check or parity.
    """
    result = export_verified(
        model, directory, canvas, max_batch=batch if batch > 1 else None, parity_samples=2
    )
    calibration, _ = load_samples(model.cfg, "train", calib_samples)
    quantize_verified(result.deployment, [sample_image(s) for s in calibration])
    return Path(directory)


def _time_backends(model, directory: Path, canvas, batch_size: int, threads, warmup, runs):
    """The input batch, its MACs and each backend's timing (``onnxruntime_int8`` if exported)."""
    fp32 = load_deployment(directory / "model.json")
    exported = [int(s) for s in fp32.sidecar["input"]["shape"][2:]]
    if canvas is not None and list(canvas) != exported:
        raise BenchmarkError(
            f"--shape {canvas[0]} {canvas[1]} differs from the canvas {exported[0]} {exported[1]} "
            f"of the export {str(directory)!r}; export again at that size or drop --shape"
        )
    samples, _ = load_samples(model.cfg, "val", batch_size)
    images = [sample_image(samples[i % len(samples)]) for i in range(batch_size)]
    batch, _ = fp32.preprocess(images)
    declared = fp32.sidecar["input"]["shape"][0]
    if declared != "batch" and declared != batch_size:
        raise BenchmarkError(
            f"{fp32.sidecar_path} is exported for batch {declared}; export with "
            f"--dynamic {batch_size} or benchmark --batch {declared}"
        )
    tensor = torch.from_numpy(batch)
    macs = count_macs(model, tensor, mode="tensor")["total"]
    providers = ["CPUExecutionProvider"]
    runners = {"pytorch_eager": None}
    runners["onnxruntime_fp32"] = OrtRunner(fp32, providers=providers, threads=threads)
    int8_sidecar = directory / "model_int8.json"
    if int8_sidecar.is_file():
        int8 = load_deployment(int8_sidecar)
        runners["onnxruntime_int8"] = OrtRunner(int8, providers=providers, threads=threads)

    def eager() -> None:
        with torch.inference_mode():
            model(tensor, mode="tensor")

    # PyTorch's OpenMP threads keep spinning after each call and would slow the run after them,
    # so eager is timed on its own; the ONNX Runtime backends interleaved, run by run, so a
    # load change on the machine hits fp32 and INT8 alike
    results = {"pytorch_eager": measure_latency(eager, warmup, runs)}
    fns = {n: (lambda r=r: r.run(batch)) for n, r in runners.items() if r is not None}
    results.update(measure_interleaved(fns, warmup, runs))
    for timing in results.values():
        seconds = timing["median_ms"] / 1e3
        timing["images_per_s"] = batch_size / seconds
        timing["gflops"] = 2 * macs / seconds / 1e9
    return batch, macs, results


def benchmark_model(
    model: torch.nn.Module,
    canvas: tuple[int, int] | None = None,
    export_dir: str | os.PathLike | None = None,
    batch: int = 1,
    threads: int | None = None,
    calib_samples: int = 64,
    warmup: int = 20,
    runs: int = 100,
) -> dict:
    """Time ``model`` (built by ``init_model``, ``model.cfg`` its config) on every backend.

    Args:
        model: the PyTorch model, in eval mode on the CPU.
        canvas: the (H, W) to export at; with ``export_dir``, the size it must have been
            exported at (``None``: whatever it was).
        export_dir: an existing export to time (its ``model_int8.onnx`` too, if present);
            ``None`` exports and quantizes into a temporary directory
            (:func:`export_for_benchmark`).
        batch: images per run.
        threads: torch and ONNX Runtime threads (``None``: torch's current number).
        calib_samples: training images calibrating the INT8 model when this exports.
        warmup: untimed runs first.
        runs: timed runs.

    Returns:
        ``input``, ``macs``, ``threads``, ``matmul_peak_gflops``, ``machine``, ``results`` (per
        backend: latency, ``images_per_s``, ``gflops``, ``fraction_of_peak``), ``ratios`` and
        ``versions``: ``tools/benchmark.py``'s JSON without its config and checkpoint.

    Raises:
        BenchmarkError: ``batch`` or ``threads`` below 1, no ``canvas`` to export at, or an
            export for another batch size.
        ExportCheckError: the model failed an export check.
    """
    threads = torch.get_num_threads() if threads is None else threads
    if batch < 1 or threads < 1:
        raise BenchmarkError(f"--batch and --threads must be positive, got {batch}, {threads}")
    if export_dir is None and canvas is None:
        raise BenchmarkError("exporting for the benchmark needs a canvas (H, W): pass --shape H W")
    torch.set_num_threads(threads)
    temporary = None
    if export_dir is None:
        temporary = Path(tempfile.mkdtemp(prefix="vision_mtl-benchmark-"))
    try:
        if temporary is not None:
            directory = export_for_benchmark(model, temporary, canvas, batch, calib_samples)
        else:
            directory = Path(export_dir)
        array, macs, results = _time_backends(
            model, directory, canvas, batch, threads, warmup, runs
        )
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    peak = matmul_peak_gflops(threads)
    for timing in results.values():
        timing["fraction_of_peak"] = timing["gflops"] / peak
    fp32_ms = results["onnxruntime_fp32"]["median_ms"]
    ratios = {"onnxruntime_fp32_vs_eager": fp32_ms / results["pytorch_eager"]["median_ms"]}
    if "onnxruntime_int8" in results:
        ratios["int8_vs_fp32"] = results["onnxruntime_int8"]["median_ms"] / fp32_ms
    return dict(
        input=list(array.shape),
        macs=macs,
        threads=threads,
        matmul_peak_gflops=peak,
        machine=dict(processor=platform.processor() or platform.machine(), cpus=os.cpu_count()),
        results=results,
        ratios=ratios,
        versions=dict(torch=torch.__version__, onnxruntime=_ort_version()),
    )


def format_benchmark(report: dict) -> list[str]:
    """The lines ``tools/benchmark.py`` prints: input, peak, one row per backend, ratios."""
    threads = report["threads"]
    shape = "x".join(map(str, report["input"]))
    lines = [f"input {shape}, {report['macs'] / 1e9:.3f} GMACs, {threads} threads"]
    peak = report["matmul_peak_gflops"]
    lines.append(f"fp32 matmul peak (torch, {threads} threads): {peak:.1f} GFLOP/s")
    columns = ("median ms", 10), ("p90 ms", 8), ("img/s", 8), ("GFLOP/s", 8), ("of peak", 8)
    lines.append(f"{'backend':<18}" + "".join(f" {name:>{width}}" for name, width in columns))
    for name, t in report["results"].items():
        lines.append(
            f"{name:<18} {t['median_ms']:>10.2f} {t['p90_ms']:>8.2f} {t['images_per_s']:>8.1f} "
            f"{t['gflops']:>8.1f} {t['fraction_of_peak']:>8.1%}"
        )
    lines += [f"{name}: {value:.2f}x" for name, value in report["ratios"].items()]
    return lines


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
