"""Video files and cameras through an exported model: an annotated video and frames per second.

Used by ``deploy/infer.py`` when its input is a video file or a camera index. Each frame is
predicted in the chosen mode (``resize`` suits a camera whose frames exceed the canvas) and
written as the frame with one task's prediction blended over it. Needs OpenCV and the runtime
only (no torch).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def is_video_source(source: str) -> bool:
    """A camera index (``0``, ``1``, ...) or a file with a video suffix."""
    return source.isdigit() or Path(source).suffix.lower() in VIDEO_SUFFIXES


def open_source(source: str):
    """``cv2.VideoCapture`` of a camera index or a video file, with an error naming it."""
    import cv2

    if not source.isdigit() and not Path(source).is_file():
        raise SystemExit(f"video {source!r} does not exist or is not a file")
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise SystemExit(f"cannot open {'camera' if source.isdigit() else 'video'} {source!r}")
    return capture


def annotate_video(
    source: str,
    out_path: Path,
    predict,
    paint,
    task: str,
    alpha: float = 0.5,
    max_frames: int | None = None,
) -> dict[str, float]:
    """Predict every frame of ``source`` and write ``out_path`` (MJPG AVI), frame + overlay.

    Args:
        source: a video file or a camera index.
        out_path: the annotated video, written to a temporary file beside it and renamed.
        predict: RGB frame → task → prediction at the frame's size.
        paint: (task, prediction) → H×W×3 uint8 RGB picture of it.
        task: the task blended over the frames.
        alpha: weight of the painted prediction in the blend.
        max_frames: stop after this many frames (a camera never ends by itself).

    Returns:
        ``frames``, ``seconds`` (all of it), ``fps`` (frames per second end to end) and
        ``model_fps`` (frames per second of prediction alone).
    """
    import cv2

    from vision_mtl.runtime.colorize import overlay

    capture = open_source(source)
    fps_in = capture.get(cv2.CAP_PROP_FPS) or 0.0
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".avi", dir=out_path.parent)
    os.close(fd)
    writer, frames, model_seconds = None, 0, 0.0
    start = time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(bgr[..., ::-1])
            tick = time.perf_counter()
            prediction = predict(rgb)
            model_seconds += time.perf_counter() - tick
            blended = overlay(rgb, paint(task, prediction[task]), alpha)
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*"MJPG")
                size = (rgb.shape[1], rgb.shape[0])
                writer = cv2.VideoWriter(tmp, fourcc, fps_in if fps_in > 0 else 10.0, size)
            writer.write(np.ascontiguousarray(blended[..., ::-1]))
            frames += 1
        if writer is None:
            raise SystemExit(f"no frame could be read from {source!r}")
        writer.release()
        writer = None
        os.replace(tmp, out_path)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.unlink(tmp)
    seconds = time.perf_counter() - start
    return dict(
        frames=frames,
        seconds=seconds,
        fps=frames / seconds,
        model_fps=frames / model_seconds if model_seconds else float("inf"),
    )
