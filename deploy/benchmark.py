"""Latency of an exported model or engine on this device: median and p90 after warm-up.

``python deploy/benchmark.py MODEL [--backend ort|trt] [--batch 1] [--warmup 20] [--runs 200]
[--out latency.json]``

MODEL is what ``deploy/infer.py`` takes (an ONNX export or its sidecar for ``ort``, a ``.plan``
engine for ``trt``); its sidecar is checked first. The input is a fixed random image batch at the
export canvas, already preprocessed, so the figure is the network alone (pre- and
post-processing are timed separately, as ``preprocess_ms`` and ``postprocess_ms``). On a Jetson,
fix the clocks first (deploy/jetson/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infer import build_runner  # noqa: E402

from vision_mtl.export.timing import measure_latency  # noqa: E402
from vision_mtl.export.validate import int_at_least  # noqa: E402
from vision_mtl.runtime import DeploymentError  # noqa: E402
from vision_mtl.utils import write_json  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--backend", choices=["ort", "trt"], default="ort")
    parser.add_argument("--batch", type=int_at_least(1), default=1)
    parser.add_argument("--warmup", type=int_at_least(0), default=20)
    parser.add_argument("--runs", type=int_at_least(1), default=200)
    parser.add_argument("--out", help="write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        runner = build_runner(args.model, args.backend)
    except DeploymentError as err:
        raise SystemExit(str(err)) from None
    deployment = runner.deployment
    shape = deployment.sidecar["input"]["shape"]
    if shape[0] != "batch" and shape[0] != args.batch:
        raise SystemExit(f"{deployment.sidecar_path} takes batch {shape[0]}, not {args.batch}")
    profile = deployment.sidecar.get("batch_profile")
    if profile and not profile["min"] <= args.batch <= profile["max"]:
        raise SystemExit(
            f"batch {args.batch} is outside the exported range {profile['min']}..{profile['max']}"
        )
    height, width = deployment.canvas
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.batch)]
    batch, sizes = deployment.preprocess(images)
    network = measure_latency(lambda: runner.run(batch), args.warmup, args.runs)
    outputs = runner.run(batch)
    pre = measure_latency(lambda: deployment.preprocess(images), 3, 20)
    post = measure_latency(lambda: deployment.postprocess(outputs, sizes), 3, 20)
    report = dict(
        model=str(deployment.sidecar_path),
        backend=args.backend,
        batch=args.batch,
        canvas=[height, width],
        network=network,
        images_per_s=args.batch / (network["median_ms"] / 1e3),
        preprocess_ms=pre["median_ms"],
        postprocess_ms=post["median_ms"],
        engine=deployment.sidecar.get("engine"),
    )
    print(
        f"{args.backend} batch {args.batch} at {height}x{width}: median "
        f"{network['median_ms']:.2f} ms, p90 {network['p90_ms']:.2f} ms, "
        f"{report['images_per_s']:.1f} images/s (pre {pre['median_ms']:.2f} ms, "
        f"post {post['median_ms']:.2f} ms)"
    )
    if args.out:
        write_json(report, Path(args.out))
    return report


if __name__ == "__main__":
    main()
