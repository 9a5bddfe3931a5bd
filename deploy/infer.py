"""Predict every task for images with an exported model: ONNX Runtime or a TensorRT engine.

``python deploy/infer.py MODEL IMAGE [IMAGE ...] --out DIR [--backend ort|trt]``

MODEL is the export's ``.onnx`` file, its ``.json`` sidecar or its directory (``ort``), or a
``.plan`` engine from build_engine.py (``trt``). Pre- and post-processing are the training
ones (:mod:`vision_mtl.export.runtime`). For each image and task it writes
``DIR/<image stem>_<task>.npy`` (the prediction at the image's size: class ids, probabilities,
metres, or H×W×3 unit normals) and ``DIR/<image stem>_<task>.png`` (painted as in training
pictures). A sidecar that does not match its model fails before any inference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_mtl.apis.inference import read_image  # noqa: E402
from vision_mtl.engine.checkpoint import atomic_write_bytes  # noqa: E402
from vision_mtl.export import OrtRunner, load_deployment  # noqa: E402
from vision_mtl.tasks import get_task  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", choices=["ort", "trt"], default="ort")
    return parser.parse_args(argv)


def build_runner(model: str, backend: str):
    """The runner for ``backend``; the model/sidecar pair is checked before it is loaded."""
    if backend == "trt":
        from trt_runtime import TrtRunner

        return TrtRunner(model)
    return OrtRunner(load_deployment(model))


def _save_npy(array: np.ndarray, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(buffer.getvalue(), path)


def _save_png(rgb: np.ndarray, path: Path) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write_bytes(data.tobytes(), path)


def main(argv: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    args = parse_args(argv)
    runner = build_runner(args.model, args.backend)
    deployment = runner.deployment
    images = {Path(p).stem: read_image(p) for p in args.images}  # every image is read first
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = deployment.sidecar.get("num_classes", {})
    results = {}
    for stem, image in images.items():
        prediction = runner.predict([image])[0]
        for task, value in prediction.items():
            _save_npy(value, out / f"{stem}_{task}.npy")
            _save_png(get_task(task).colorize(value, classes.get(task)), out / f"{stem}_{task}.png")
        results[stem] = prediction
    print(f"wrote {len(images) * len(deployment.tasks) * 2} files to {out}")
    return results


if __name__ == "__main__":
    main()
