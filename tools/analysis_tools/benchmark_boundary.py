"""Time the boundary benchmark (SEISM's protocol) on an NYUD-v2-sized split.

``python tools/analysis_tools/benchmark_boundary.py [--images 654] [--size 425x560] [--nproc N]
[--out FILE]`` (defaults: every CPU core, ``work_dirs/benchmarks/boundary.json``)

Ground truth: the boundary maps of SynthScenes val scenes rendered at ``--size``. Predictions:
what an edge network outputs, roughly — the ground truth blurred (Gaussian, ``--blur`` pixels),
scaled to peak 1, plus per-pixel Gaussian noise (``--noise``), clipped to [0, 1]. Each image's
noise is seeded by its index, so every run scores the same split.

Timed, from the first image handed to :class:`~vision_mtl.evaluation.BoundaryMetric` to the
final numbers, with ``--nproc`` worker processes:

* ``full``: the published protocol (SEISM's 101 thresholds);
* ``fast``: the validation mode (5 of them).

Agreement with the original SEISM code is not measured here but tested, on golden fixtures the
original code computed (``tests/test_seism_fixtures.py``). Figures go to stdout and to ``--out``
as JSON.
"""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from vision_mtl.analysis_cli import analysis_parser, parse_size
from vision_mtl.apis.runner import write_json
from vision_mtl.datasets.synthscenes import sample_key
from vision_mtl.datasets.synthscenes_render import render_scene
from vision_mtl.evaluation import BoundaryMetric


def make_pair(index: int, size: tuple[int, int], blur: float, noise: float):
    """Ground-truth boundaries of val scene ``index`` and a noisy blurred prediction of them."""
    gt = render_scene(sample_key(0, "val", index), size)["edge"].reshape(size).astype(bool)
    rng = np.random.default_rng(index)
    prob = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), blur)
    prob = prob / max(float(prob.max()), 1e-6) + rng.normal(0.0, noise, gt.shape)
    return np.clip(prob, 0.0, 1.0), gt.astype(np.uint8)


def score(samples: list, mode: str, nproc: int, max_dist: float) -> tuple[dict, float]:
    """Run the metric as a validation loop would; returns (results, wall seconds)."""
    metric = BoundaryMetric(max_dist=max_dist, mode=mode, nproc=nproc, prefix="")
    # Start the workers before the clock: a training run pays that once, not per validation.
    for _ in range(2 * max(nproc, 1)):
        metric.process(None, samples[:1])
    metric.evaluate(2 * max(nproc, 1))
    start = time.perf_counter()
    for sample in samples:
        metric.process(None, [sample])
    results = metric.evaluate(len(samples))
    return results, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = analysis_parser(__doc__.split("\n\n")[0], "boundary")
    parser.add_argument("--images", type=int, default=654)
    parser.add_argument("--size", type=parse_size, default=(425, 560))
    parser.add_argument("--max-dist", type=float, default=0.011)
    parser.add_argument("--blur", type=float, default=1.5)
    parser.add_argument("--noise", type=float, default=0.08)
    parser.add_argument("--nproc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--modes", nargs="+", default=["full", "fast"], choices=["full", "fast"])
    args = parser.parse_args(argv)

    start = time.perf_counter()
    with ProcessPoolExecutor(args.nproc) as pool:
        pairs = list(
            pool.map(
                make_pair,
                range(args.images),
                *zip(*[(args.size, args.blur, args.noise)] * args.images, strict=True),
            )
        )
    print(f"rendered {args.images} ground-truth maps in {time.perf_counter() - start:.0f} s")
    samples = [
        {"pred": {"edge": prob}, "gt": {"edge": gt}, "meta": {"name": f"{i:06d}"}}
        for i, (prob, gt) in enumerate(pairs)
    ]
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "split": {
            "images": args.images,
            "size": list(args.size),
            "max_dist": args.max_dist,
            "prediction": f"gt blurred sigma {args.blur}, noise sigma {args.noise}, clipped",
        },
        "nproc": args.nproc,
    }
    for mode in args.modes:
        results, seconds = score(samples, mode, args.nproc, args.max_dist)
        report[mode] = {"seconds": round(seconds, 1), "results": results}
        print(f"{mode}: {seconds:.1f} s  {results}")
    write_json(report, args.out)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
