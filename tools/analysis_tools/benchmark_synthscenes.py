"""Measure how many SynthScenes samples one CPU core renders per second.

``python tools/analysis_tools/benchmark_synthscenes.py
[--out work_dirs/benchmarks/synthscenes.json] [--sizes 96x128 240x320] [--samples 100]
[--repeats 5] [--cpu N]``

Every BLAS/OpenMP pool is limited to one thread before numpy is imported and the process is
pinned to one core, so the figure is per core whatever the machine: a data loader with ``k``
workers on ``k`` free cores renders about ``k`` times as fast. Each size is timed ``--repeats``
times over fresh scenes; the best repeat estimates the speed of an idle core and the median what
a shared machine gave, and both are reported.
"""

from __future__ import annotations

from vision_mtl.analysis_cli import analysis_parser, parse_size, single_thread_environment

single_thread_environment()  # before numpy is imported: thread pools read it once

import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from vision_mtl.apis.runner import write_json  # noqa: E402
from vision_mtl.datasets.synthscenes import sample_key  # noqa: E402
from vision_mtl.datasets.synthscenes_render import render_scene  # noqa: E402

REFERENCE_PIXELS = 96 * 128


def pin_to_one_core(cpu: int | None) -> int | None:
    """Restrict the process (and torch, if present) to a single core; returns the core used."""
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):  # RuntimeError: interop pool already started
        pass
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {core})
    return core


def time_size(size: tuple[int, int], samples: int, repeats: int) -> dict:
    """Render ``samples`` fresh scenes ``repeats`` times at ``size``; speeds in samples/s."""
    for index in range(3):  # warm-up: first calls pay for imports and allocator growth
        render_scene(sample_key(0, "val", index), size)
    speeds, index = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(samples):
            render_scene(sample_key(0, "train", index), size)
            index += 1
        speeds.append(samples / (time.perf_counter() - start))
    return dict(
        samples_per_s_best=round(max(speeds), 2),
        samples_per_s_median=round(statistics.median(speeds), 2),
        ms_per_sample_best=round(1000 / max(speeds), 3),
        samples_per_repeat=samples,
        repeats=repeats,
        all_samples_per_s=[round(s, 2) for s in speeds],
    )


def main(argv: list[str] | None = None) -> dict:
    parser = analysis_parser(__doc__, "synthscenes")
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", default=[(96, 128), (240, 320)], help="HxW"
    )
    parser.add_argument(
        "--samples", type=int, default=100, help="scenes per repeat at 96x128 (scaled by area)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: last)")
    args = parser.parse_args(argv)
    core = pin_to_one_core(args.cpu)
    result = dict(
        unit="samples/s on one core",
        cpu=core,
        threads=1,
        python=platform.python_version(),
        numpy=np.__version__,
        machine=platform.machine(),
        processor=platform.processor() or None,
        load_average_before=[round(v, 2) for v in os.getloadavg()],
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        sizes={},
    )
    for height, width in args.sizes:
        samples = max(5, round(args.samples * REFERENCE_PIXELS / (height * width)))
        stats = time_size((height, width), samples, args.repeats)
        result["sizes"][f"{height}x{width}"] = stats
        print(
            f"SynthScenes {height}x{width}: {stats['samples_per_s_best']:.1f} samples/s/core best, "
            f"{stats['samples_per_s_median']:.1f} median "
            f"({stats['ms_per_sample_best']:.2f} ms/sample, {args.repeats}x{samples} scenes)"
        )
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
