"""Predict every task for images with an exported model: ONNX Runtime or a TensorRT engine.

``python deploy/infer.py MODEL IMAGE [IMAGE ...] --out DIR [--backend ort|trt]
[--mode pad|resize|slide] [--stride H W]``

MODEL is the export's ``.onnx`` file, its ``.json`` sidecar or its directory (``ort``), or a
``.plan`` engine from build_engine.py (``trt``). Pre- and post-processing are the training
ones, as the sidecar records them (:mod:`vision_mtl.runtime`: numpy, OpenCV and onnxruntime or
TensorRT; neither torch nor mmengine is imported). For each image and task it writes
``DIR/<image stem>_<task>.npy`` (the prediction at the image's size: class ids, probabilities,
metres, or H×W×3 unit normals) and ``DIR/<image stem>_<task>.png`` (painted as in training
pictures). The stem is the image's file name without its last suffix.

``--picture`` chooses the PNG: ``map`` (default: the painted prediction alone, black where there is
no value, as before), ``side`` (the input beside the painted prediction) or ``overlay`` (the
prediction blended over the input, ``--alpha``); ``side`` and ``overlay`` hatch pixels without a
value as the training pictures do (docs/pictures.md).

A video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``) or a camera index (``0``) as the
only input writes ``DIR/<stem>_<task>.avi``: every frame with ``--video-task``'s prediction blended
over it (``--max-frames`` stops a camera), and prints frames per second end to end and of the
model alone.

``--mode`` says how an image meets the exported canvas (:mod:`vision_mtl.runtime.tiling`):
``pad`` (default) pads images up to the canvas and refuses larger ones; ``resize`` scales an
image of any size to fit the canvas and resizes the raw outputs back before decoding; ``slide``
runs overlapping canvas-sized windows (``--stride``, default 2/3 of the canvas) at native
resolution and averages their raw outputs. Predictions are always at the image's size.

Nothing is written until every input has passed: the sidecar matches its model, every image is
readable and, in ``pad`` mode, fits the exported canvas (an error names the file), and no two
inputs would write the same output name (``a/img.png`` and ``b/img.png``, or names differing
only in case, which collide on case-insensitive file systems; rename one) nor overwrite an input
image. Outputs are written to a hidden staging directory in DIR and moved into place once all
are written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video import annotate_video, is_video_source  # noqa: E402

from vision_mtl.input_size import positive_int  # noqa: E402
from vision_mtl.runtime import (  # noqa: E402
    DeploymentError,
    OrtRunner,
    colorize,
    load_deployment,
    read_image,
)
from vision_mtl.runtime.colorize import overlay  # noqa: E402
from vision_mtl.runtime.sidecar import is_plain_file_name  # noqa: E402
from vision_mtl.runtime.tiling import MODES, plan_image  # noqa: E402
from vision_mtl.utils import atomic_write_bytes  # noqa: E402

SUFFIXES = (".npy", ".png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", choices=["ort", "trt"], default="ort")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="pad",
        help="pad: images up to the canvas; resize: scale to fit; slide: overlapping windows",
    )
    parser.add_argument(
        "--stride",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="slide mode's window stride in pixels (default: 2/3 of the canvas)",
    )
    parser.add_argument(
        "--picture",
        choices=["map", "side", "overlay"],
        default="map",
        help="PNG: the painted map, the input beside it, or the map blended over the input",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay weight of the map")
    parser.add_argument("--video-task", help="task blended over video frames (default: first)")
    parser.add_argument(
        "--max-frames", type=positive_int, help="stop a video or camera after N frames"
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"argument --alpha: must lie in [0, 1], got {args.alpha}")
    return args


def picture(kind: str, image: np.ndarray, painted: np.ndarray, alpha: float) -> np.ndarray:
    """The PNG's content for ``--picture kind``."""
    if kind == "side":
        return np.concatenate([image, painted], axis=1)
    if kind == "overlay":
        return overlay(image, painted, alpha)
    return painted


def run_video(args, runner, deployment, out: Path) -> dict:
    """The video/camera path of :func:`main` (see the module docstring)."""
    source = args.images[0]
    task = args.video_task or deployment.tasks[0]
    if task not in deployment.tasks:
        raise SystemExit(f"--video-task {task!r} is not one of {list(deployment.tasks)}")
    stem = f"camera{source}" if source.isdigit() else Path(source).stem
    classes = deployment.sidecar.get("num_classes", {})
    rules = deployment.rules

    def predict(frame: np.ndarray) -> dict:
        frame = deployment.check_image(frame, f"a frame of {source!r}", args.mode)
        return deployment.predict(runner.run, [frame], args.mode, args.stride)[0]

    def paint(name: str, value: np.ndarray) -> np.ndarray:
        return colorize(rules[name].colormap, value, classes.get(name), hatch_invalid=True)

    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stem}_{task}.avi"
    try:
        stats = annotate_video(source, target, predict, paint, task, args.alpha, args.max_frames)
    except (DeploymentError, ValueError) as err:
        raise SystemExit(str(err)) from None
    print(
        f"wrote {target}: {stats['frames']} frames, {stats['fps']:.1f} frames/s end to end, "
        f"{stats['model_fps']:.1f} frames/s for the model ({args.mode} mode)"
    )
    return dict(video=str(target), **stats)


def build_runner(model: str, backend: str):
    """The runner for ``backend``; the model/sidecar pair is checked before it is loaded."""
    if backend == "trt":
        from trt_runtime import TrtRunner, tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise SystemExit(f"cannot run a TensorRT engine here: {reason}")
        return TrtRunner(model)
    return OrtRunner(load_deployment(model))


def plan_outputs(images: list[str], tasks: list[str], out: Path) -> dict[str, list[str]]:
    """Image path → its output file names, checked to be safe and distinct.

    Raises:
        SystemExit: an output name is not a plain file name in ``out``, two inputs would write
            the same name (compared case-insensitively), or an output would overwrite an input.
    """
    owners: dict[str, str] = {}
    inputs = {_key(Path(p)): p for p in images}
    plan = {}
    for image in images:
        if image in plan:
            raise SystemExit(f"image {image!r} is given twice; each input writes its own outputs")
        stem = Path(image).stem
        names = [f"{stem}_{task}{suffix}" for task in tasks for suffix in SUFFIXES]
        for name in names:
            if not is_plain_file_name(name):
                raise SystemExit(
                    f"image {image!r} would write {name!r}, which is not a plain file name in "
                    f"{str(out)!r}; rename the image"
                )
            first = owners.setdefault(name.casefold(), image)
            if first != image:
                raise SystemExit(
                    f"images {first!r} and {image!r} would both write {name!r} in {str(out)!r} "
                    "(outputs are named <image stem>_<task>); give them distinct file names"
                )
            clobbered = inputs.get(_key(out / name))
            if clobbered is not None:
                raise SystemExit(
                    f"image {image!r} would write {str(out / name)!r}, overwriting the input "
                    f"image {clobbered!r}; choose another --out"
                )
        plan[image] = names
    return plan


def _key(path: Path) -> str:
    """A path as the file system sees it: symlinks resolved, case folded where it is ignored."""
    return os.path.normcase(os.path.realpath(path))


def read_images(paths: list[str], deployment, mode: str = "pad") -> list[np.ndarray]:
    """Every image, read and checked for ``mode`` (``pad``: fits the canvas), else an error."""
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise SystemExit(f"image {path!r} does not exist or is not a file")
        try:
            images.append(deployment.check_image(read_image(path), f"image {path!r}", mode))
        except FileNotFoundError as err:
            raise SystemExit(f"{err} (missing, unreadable or not an image)") from None
    return images


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _png_bytes(rgb: np.ndarray, name: str) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {name}")
    return data.tobytes()


def main(argv: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Run the CLI; returns image stem → task → prediction. Bad input exits before any write."""
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {str(out)!r} exists and is not a directory")
    try:
        runner = build_runner(args.model, args.backend)
        deployment = runner.deployment
        if len(args.images) == 1 and is_video_source(args.images[0]):
            return run_video(args, runner, deployment, out)
        plan = plan_outputs(args.images, deployment.tasks, out)
        images = read_images(args.images, deployment, args.mode)
        if args.stride:
            if args.mode != "slide":
                raise SystemExit(f"--stride applies to --mode slide only, not {args.mode!r}")
            plan_image((1, 1), deployment.canvas, "slide", tuple(args.stride))
    except (DeploymentError, ValueError) as err:
        raise SystemExit(str(err)) from None
    classes = deployment.sidecar.get("num_classes", {})
    rules = deployment.rules  # each prediction is painted as its decoding rule's kind
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".infer-", dir=out))  # moved into place at the end
    results = {}
    try:
        for path, image in zip(args.images, images, strict=True):
            prediction = deployment.predict(runner.run, [image], args.mode, args.stride)[0]
            names = iter(plan[path])
            for task in deployment.tasks:
                value = prediction[task]
                atomic_write_bytes(_npy_bytes(value), stage / next(names))
                png = next(names)
                hatched = args.picture != "map"  # beside the input: one hatch for "no value"
                painted = colorize(
                    rules[task].colormap, value, classes.get(task), hatch_invalid=hatched
                )
                content = picture(args.picture, image, painted, args.alpha)
                atomic_write_bytes(_png_bytes(content, png), stage / png)
            results[Path(path).stem] = prediction
        for names in plan.values():
            for name in names:
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"wrote {sum(map(len, plan.values()))} files to {out}")
    return results


if __name__ == "__main__":
    main()
