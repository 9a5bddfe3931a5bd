"""Measure the training data pipeline (read + decode + MultiTaskAugment + pack) per CPU core.

``python tools/analysis_tools/benchmark_pipeline.py [--num 20]
[--out work_dirs/benchmarks/pipeline.json]`` writes SynthScenes in the NYUD-v2 (425x560) and
PASCAL_MT (375x500) layouts to a temporary folder, then times the real loaders with each
dataset config's training pipeline at its canvas (448x576, 512x512), one thread. Cityscapes has
no SynthScenes writer: its figure times the augmentation alone on 1024x2048 in-memory samples at
the 512x1024 canvas, and says so.
"""

from __future__ import annotations

from vision_mtl.analysis_cli import analysis_parser, single_thread_environment

single_thread_environment()  # before numpy is imported: thread pools read it once

import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vision_mtl.apis.runner import write_json  # noqa: E402
from vision_mtl.datasets import (  # noqa: E402
    MultiTaskAugment,
    NYUDv2Dataset,
    PackMultiTaskInputs,
    PascalContextMTDataset,
    SynthScenesDataset,
)
from vision_mtl.datasets.layouts import write_nyud_layout, write_pascal_layout  # noqa: E402

cv2.setNumThreads(1)


def _time(fn, num: int) -> float:
    fn(0)  # warm-up (and the PASCAL edge cache for sample 0 — later samples compute theirs)
    start = time.perf_counter()
    for i in range(1, num + 1):
        fn(i % num)
    return num / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = analysis_parser(__doc__, "pipeline")
    parser.add_argument("--num", type=int, default=20)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, writer, loader, size, crop, tasks in (
            ("nyud", write_nyud_layout, NYUDv2Dataset, (425, 560), (448, 576), "nyud"),
            (
                "pascal",
                write_pascal_layout,
                PascalContextMTDataset,
                (375, 500),
                (512, 512),
                "pascal",
            ),
        ):
            synth = SynthScenesDataset(
                split="train", num_samples=args.num, tasks=tasks, image_size=size
            )
            writer((synth.load_sample(i) for i in range(args.num)), f"{tmp}/{name}", "train")
            pipeline = [MultiTaskAugment(crop, seed=0), PackMultiTaskInputs()]
            data = loader(f"{tmp}/{name}", split="train", pipeline=pipeline)
            results[name] = dict(
                image_size=size,
                canvas=crop,
                samples_per_s=round(_time(data.__getitem__, args.num), 2),
            )
        rng = np.random.default_rng(0)
        sample = dict(
            image=rng.integers(0, 255, (1024, 2048, 3), dtype=np.uint8),
            semseg=rng.integers(0, 19, (1024, 2048), dtype=np.uint8),
            disparity=rng.random((1024, 2048), dtype=np.float32) * 100,
        )
        augment, pack = MultiTaskAugment((512, 1024), seed=0), PackMultiTaskInputs()
        results["cityscapes_augment_only"] = dict(
            image_size=(1024, 2048),
            canvas=(512, 1024),
            samples_per_s=round(
                _time(lambda i: pack(augment({k: v.copy() for k, v in sample.items()})), args.num),
                2,
            ),
        )
    result = dict(unit="samples/s on one thread", samples=args.num, pipelines=results)
    write_json(result, args.out)
    for name, r in results.items():
        print(f"{name}: {r['samples_per_s']} samples/s per core at canvas {r['canvas']}")
    return result


if __name__ == "__main__":
    main()
