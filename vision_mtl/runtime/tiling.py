"""Inference at any image size: plan the canvas-sized windows an image needs, merge their outputs.

A graph (or a model traced for export) runs at one canvas (H, W). Three modes bring an image of
any size to it; each is a plan of windows, the windows' raw outputs (logits, before decoding) are
merged back into one raw map per task at the image's size, and that map is decoded by the task's
rule (:mod:`vision_mtl.runtime.decode`):

* ``pad``: the image is written at the top-left of the canvas and the outputs cropped back (the
  training pre-processing); an image larger than the canvas is refused.
* ``resize``: the image is scaled, aspect ratio kept, to the largest size that fits the canvas
  (down with OpenCV's area filter, up with its linear one), padded, and the cropped raw outputs
  are resized linearly (half-pixel centres, as ``torch.nn.functional.interpolate`` with
  ``align_corners=False``) back to the image's size before decoding.
* ``slide``: windows of the canvas size at native resolution, ``stride`` apart (default 2/3 of
  the canvas, the last window flush with the border), raw outputs averaged where windows
  overlap; an axis shorter than the canvas is padded as in ``pad``.

Why raw outputs are resampled before decoding, for every rule: each rule's steps (argmax,
softmax, sigmoid, relu, l2normalize, channel) act on one pixel's channels only, so a rule
applied after a linear resample still gives a valid prediction at every pixel, and linear
resampling of raw outputs is what the model's heads already do from their stride to the
canvas. Per kind this means: class ids are the argmax of interpolated logits (smooth
boundaries, no blocky nearest-neighbour labels); probabilities (sigmoid, foreground softmax)
are those of interpolated logits, still in [0, 1]; magnitudes (relu: depth in metres) are
interpolated, never scaled (a resize does not move the camera); vectors are interpolated and
then renormalized to unit length by the ``unit`` rule. Averaging overlapping windows is also a
convex combination of logits, so the same argument holds for ``slide``. Values in pixels
(disparity) are not rescaled by ``resize``: they stay in canvas pixels.

Both :func:`vision_mtl.apis.inference` (around the PyTorch model) and the edge runtime (around
ONNX Runtime or TensorRT) call :func:`predict_images`; the caller supplies ``run``, which maps a
B×3×H×W float32 canvas batch to raw B×C×H×W outputs per task. NumPy only; OpenCV is imported
to scale images in ``resize`` mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vision_mtl.runtime.decode import DecodeRule, decode_array
from vision_mtl.runtime.preprocess import check_image

Mode = Literal["pad", "resize", "slide"]
MODES: tuple[str, ...] = ("pad", "resize", "slide")
# Default slide stride: 2/3 of the canvas (numerator, denominator); windows overlap by a third.
STRIDE_FRACTION = (2, 3)
# Output rows resampled and decoded at once in ``resize`` mode (bounds memory for large photos).
BAND_ROWS = 256

Run = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Plan:
    """How one image becomes canvas-sized windows.

    Attributes:
        mode: the inference mode.
        size: the image's (h, w): every prediction has this size.
        scaled: the (h, w) the image is scaled to before windowing (``size`` unless ``resize``).
        origins: the (top, left) of each window in the scaled image.
    """

    mode: str
    size: tuple[int, int]
    scaled: tuple[int, int]
    origins: tuple[tuple[int, int], ...]


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else an error listing them."""
    if mode not in MODES:
        raise ValueError(f"inference mode {mode!r} is unknown; expected one of {list(MODES)}")
    return mode


def default_stride(canvas: tuple[int, int]) -> tuple[int, int]:
    """The default ``slide`` stride: 2/3 of the canvas per axis, rounded up."""
    num, den = STRIDE_FRACTION
    return tuple(max(1, -(-num * int(c) // den)) for c in canvas)


def _starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis: ``stride`` apart, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def plan_image(
    size: tuple[int, int],
    canvas: tuple[int, int],
    mode: str = "pad",
    stride: tuple[int, int] | None = None,
    name: str = "image",
) -> Plan:
    """The windows an image of ``size`` needs at ``canvas`` in ``mode`` (module docstring).

    Raises:
        ValueError: an unknown mode or a stride that is not positive or exceeds the canvas.
        DeploymentError: ``pad`` mode and an image larger than the canvas (the message names
            ``resize`` and ``slide``).
    """
    check_mode(mode)
    h, w = size
    if mode == "pad":
        check_image(np.empty((h, w, 3), np.uint8), canvas, name)
        return Plan(mode, (h, w), (h, w), ((0, 0),))
    if mode == "resize":
        scale = min(canvas[0] / h, canvas[1] / w)
        scaled = (
            min(canvas[0], max(1, round(h * scale))),
            min(canvas[1], max(1, round(w * scale))),
        )
        return Plan(mode, (h, w), scaled, ((0, 0),))
    stride = tuple(stride) if stride is not None else default_stride(canvas)
    if len(stride) != 2 or not all(0 < s <= c for s, c in zip(stride, canvas, strict=True)):
        raise ValueError(
            f"slide stride {list(stride)} must be two positive integers no larger than the "
            f"canvas {canvas[0]}x{canvas[1]}"
        )
    rows = _starts(h, canvas[0], stride[0])
    cols = _starts(w, canvas[1], stride[1])
    return Plan(mode, (h, w), (h, w), tuple((t, left) for t in rows for left in cols))


def _scale_image(image: np.ndarray, scaled: tuple[int, int]) -> np.ndarray:
    """``image`` at ``scaled`` (h, w): area filter to shrink, linear to enlarge."""
    if tuple(image.shape[:2]) == tuple(scaled):
        return image
    import cv2

    shrink = scaled[0] * scaled[1] < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (scaled[1], scaled[0]), interpolation=interpolation)


def make_windows(
    image: np.ndarray,
    plan: Plan,
    mean: Sequence[float],
    std: Sequence[float],
    canvas: tuple[int, int],
) -> np.ndarray:
    """The plan's windows of ``image`` as an N×3×H×W float32 batch, normalized and zero-padded.

    Normalization is ``(pixel - mean) / std`` in float32; padding (0 after normalization, the
    mean colour) is at the bottom/right, as the training pre-processing pads.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    scaled = _scale_image(image, plan.scaled)
    normalized = ((scaled.astype(np.float32) - mean) / std).transpose(2, 0, 1)
    batch = np.zeros((len(plan.origins), 3, *canvas), np.float32)
    for i, (top, left) in enumerate(plan.origins):
        crop = normalized[:, top : top + canvas[0], left : left + canvas[1]]
        batch[i, :, : crop.shape[1], : crop.shape[2]] = crop
    return batch


def _linear_axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a linear resample of one axis (half-pixel centres)."""
    position = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    position = np.clip(position, 0, src - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, src - 1)
    return low, high, (position - low).astype(np.float32)


def resize_linear(value: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample C×h×w to C×H×W linearly (``interpolate(..., 'bilinear', align_corners=False)``)."""
    return _resize_rows(value, size, 0, size[0])


def _layout(value: np.ndarray) -> np.ndarray:
    """A decoded 1×H×W map as H×W, a 1×C×H×W vector map as H×W×C (the predictions' layout)."""
    value = value[0]
    return value.transpose(1, 2, 0) if value.ndim == 3 else value


class Merger:
    """Merges one image's windows as their raw outputs arrive, then decodes them.

    ``slide`` keeps a running sum and count at the image's size (raw outputs of finished
    windows are not kept); ``pad`` and ``resize`` keep their single window.
    """

    def __init__(self, plan: Plan, rules: dict[str, DecodeRule]) -> None:
        self.plan = plan
        self.rules = rules
        self.seen = 0
        self.window: dict[str, np.ndarray] = {}
        self.total: dict[str, np.ndarray] = {}
        self.count = np.zeros(plan.size, np.float32) if plan.mode == "slide" else None

    @property
    def done(self) -> bool:
        """Whether every window of the plan has been added."""
        return self.seen == len(self.plan.origins)

    def add(self, raw: dict[str, np.ndarray]) -> None:
        """Add the next window's raw outputs (task → C×H×W at the canvas)."""
        h, w = self.plan.size
        top, left = self.plan.origins[self.seen]
        for task in self.rules:
            value = np.asarray(raw[task], np.float32)
            if self.count is None:
                self.window[task] = value
                continue
            rows, cols = min(h - top, value.shape[1]), min(w - left, value.shape[2])
            if task not in self.total:
                self.total[task] = np.zeros((value.shape[0], h, w), np.float32)
            self.total[task][:, top : top + rows, left : left + cols] += value[:, :rows, :cols]
        if self.count is not None:  # every task's window has the canvas size: the last one's
            self.count[top : top + rows, left : left + cols] += 1
        self.seen += 1

    def result(self) -> dict[str, np.ndarray]:
        """Task → prediction at the image's size (see the module docstring)."""
        h, w = self.plan.size
        out = {}
        for task, rule in self.rules.items():
            if self.plan.mode == "pad":
                out[task] = _layout(decode_array(rule, self.window[task][None, :, :h, :w]))
            elif self.plan.mode == "resize":
                crop = self.window[task][:, : self.plan.scaled[0], : self.plan.scaled[1]]
                bands = [
                    decode_array(
                        rule, _resize_rows(crop, (h, w), top, min(BAND_ROWS, h - top))[None]
                    )
                    for top in range(0, h, BAND_ROWS)
                ]
                out[task] = _layout(np.concatenate(bands, axis=-2))
            else:
                out[task] = _layout(decode_array(rule, (self.total[task] / self.count)[None]))
        return out


def merge(
    plan: Plan, raw: dict[str, np.ndarray], rules: dict[str, DecodeRule]
) -> dict[str, np.ndarray]:
    """Task → prediction at the image's size from all of the plan's windows' raw outputs.

    Args:
        plan: the image's plan.
        raw: task → N×C×H×W raw outputs of the plan's N windows, in order.
        rules: task → decoding rule.
    """
    merger = Merger(plan, rules)
    for i in range(len(plan.origins)):
        merger.add({task: raw[task][i] for task in rules})
    return merger.result()


def _resize_rows(value: np.ndarray, size: tuple[int, int], top: int, rows: int) -> np.ndarray:
    """Rows ``top:top+rows`` of :func:`resize_linear` (``value``, ``size``), computed alone."""
    r0, r1, fr = _linear_axis(value.shape[-2], size[0])
    c0, c1, fc = _linear_axis(value.shape[-1], size[1])
    r0, r1, fr = r0[top : top + rows], r1[top : top + rows], fr[top : top + rows, None]
    band = value[:, r0] * (1 - fr) + value[:, r1] * fr
    return band[..., c0] * (1 - fc) + band[..., c1] * fc


def predict_images(
    images: Sequence[np.ndarray],
    run: Run,
    canvas: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    rules: dict[str, DecodeRule],
    mode: str = "pad",
    stride: tuple[int, int] | None = None,
    batch_size: int = 1,
) -> list[dict[str, np.ndarray]]:
    """Predictions (task → map at the image's size) for images of any size.

    Every image is planned (:func:`plan_image`), the windows of all images are run in batches of
    at most ``batch_size`` (one graph call per batch, windows of several images mixed), and each
    image's windows are merged as they arrive and decoded once all have (:class:`Merger`), so
    memory holds one image's windows and merged maps, not every raw output of the call.

    Args:
        images: H×W×3 uint8 RGB arrays, sizes may differ.
        run: canvas batch (B×3×H×W float32) → task → raw B×C×H×W outputs.
        canvas: the (H, W) ``run`` takes.
        mean: per-channel normalization mean.
        std: per-channel normalization std.
        rules: task → decoding rule.
        mode: ``pad``, ``resize`` or ``slide``.
        stride: ``slide``'s window stride (H, W) in pixels; default :func:`default_stride`.
        batch_size: the most windows ``run`` takes at once.

    Raises:
        DeploymentError: an image is not H×W×3 uint8 RGB, or larger than the canvas in ``pad``
            mode (the message names ``resize`` and ``slide``).
    """
    canvas = (int(canvas[0]), int(canvas[1]))
    images = [check_image(image, None, f"image {i}") for i, image in enumerate(images)]
    plans = [
        plan_image(im.shape[:2], canvas, mode, stride, f"image {i}") for i, im in enumerate(images)
    ]
    mergers = [Merger(plan, rules) for plan in plans]
    results: list[dict[str, np.ndarray] | None] = [None] * len(images)
    pending: list[tuple[int, np.ndarray]] = []  # (image index, its window), in plan order

    def flush() -> None:
        outputs = run(np.stack([window for _, window in pending]))
        for k, (i, _) in enumerate(pending):
            mergers[i].add({task: outputs[task][k] for task in rules})
            if mergers[i].done:
                results[i], mergers[i] = mergers[i].result(), None
        pending.clear()

    for i, (image, plan) in enumerate(zip(images, plans, strict=True)):
        for window in make_windows(image, plan, mean, std, canvas):
            pending.append((i, window))
            if len(pending) >= max(1, batch_size):
                flush()
    if pending:
        flush()
    return results
