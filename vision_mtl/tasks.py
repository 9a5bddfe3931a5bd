"""Everything vision_mtl knows about each dense prediction task.

This is the single source of truth for task names: decoders size their heads from
:attr:`TaskSpec.out_channels`, losses and metrics are built from :attr:`TaskSpec.loss` and
:attr:`TaskSpec.metric`, predictions are decoded by :meth:`TaskSpec.decode`, and pictures are
painted by :meth:`TaskSpec.colorize`. No other module branches on a task's name.

Conventions shared by datasets, models and metrics (DESIGN.md, "Data flow"):

* a dataset sample holds ``image`` (H×W×3 uint8 RGB) and one array per task: ``label`` tasks an
  H×W integer map with :attr:`TaskSpec.ignore_value` for unlabelled pixels, ``map`` tasks an
  H×W×C float32 array (H×W when C is 1) where an all-zero pixel is invalid;
* normals are unit vectors in the camera frame, x right, y up, z towards the viewer (the OpenGL
  convention), oriented to face the viewer (n · ray ≤ 0); horizontal flips negate x;
* a prediction (``predict`` mode) is, per task, a CPU tensor at the image's original size:
  ``label`` tasks H×W int64 class ids, probability tasks H×W float in [0, 1], ``depth`` H×W metres,
  ``normals`` 3×H×W unit vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

# colorize_depth and make_palette live in the runtime; they are importable from here as before.
from vision_mtl.runtime.colorize import colorize
from vision_mtl.runtime.colorize import colorize_depth as colorize_depth
from vision_mtl.runtime.colorize import make_palette as make_palette
from vision_mtl.runtime.decode import DecodeName, decode_array, decode_tensor

if TYPE_CHECKING:
    import torch

TargetKind = Literal["label", "map"]
Decode = DecodeName  # the rules of vision_mtl.runtime.decode.DECODE_RULES
Trivial = Literal["majority", "mean", "unit_mean", "zeros"]


@dataclass(frozen=True)
class TaskSpec:
    """What one task is: its outputs, its loss, its metric and how to draw it.

    Attributes:
        name: the key used everywhere (sample dicts, heads, ``loss_<name>``, ``<name>/metric``).
        out_channels: channels of the raw head output, or ``None`` when it is the dataset's
            number of classes.
        target_kind: ``label`` (integer map, :attr:`ignore_value` = unlabelled) or ``map``
            (float map, all-zero pixel = invalid).
        target_channels: channels of a ``map`` target (1 for depth, 3 for normals).
        loss: default loss config (``type`` in the model registry).
        metric: default metric config (``type`` in the metric registry).
        primary_metric: the metric key that Δm and best-checkpoint selection use.
        higher_is_better: direction of :attr:`primary_metric`.
        ignore_value: value of unlabelled target pixels.
        decode: how raw logits become a prediction (see :meth:`decode`).
        flip_channel: channel of a ``map`` target that changes sign on a horizontal flip.
        scale_exponent: a map's values are multiplied by ``s ** scale_exponent`` when the image
            is scaled by ``s`` (depth -1, as the anchors treat a zoom as moving closer; disparity
            in pixels +1; 0 for everything else).
        ignore_background_only: a label map holding nothing but background (0) and ignore is
            ignored whole: for human parts, an image or crop without a person (InvPT's
            ``AddIgnoreRegions``; MTL-PyTorch's parts evaluation skips such images).
        trivial: the trivial predictor the demo compares against.
        colormap: how :meth:`colorize` paints: ``palette``, ``depth``, ``normals`` or ``gray``.
        description: one line for tables and sidecars.
    """

    name: str
    out_channels: int | None
    target_kind: TargetKind
    loss: dict
    metric: dict
    primary_metric: str
    higher_is_better: bool
    decode: Decode
    trivial: Trivial
    colormap: Literal["palette", "depth", "normals", "gray"]
    description: str
    target_channels: int = 1
    ignore_value: int | float = 255
    flip_channel: int | None = None
    scale_exponent: int = 0
    ignore_background_only: bool = False

    def num_outputs(self, num_classes: int | None = None) -> int:
        """Channels of the raw head output; class tasks need the dataset's class count."""
        if self.out_channels is not None:
            return self.out_channels
        if num_classes is None or num_classes < 1:
            raise ValueError(
                f"task {self.name!r} predicts one channel per class: give num_classes "
                f"(got {num_classes!r}) in the model's task settings"
            )
        return int(num_classes)

    def decode_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn raw head outputs (B×C×H×W) into predictions (see module docstring).

        The rule :attr:`decode` is defined once, in :data:`vision_mtl.runtime.decode.DECODE_RULES`;
        this is its torch interpreter, :meth:`decode_array` its NumPy one.
        """
        return decode_tensor(self.decode, logits)

    def decode_array(self, logits: np.ndarray) -> np.ndarray:
        """:meth:`decode_logits` in NumPy, for runtimes without torch (ONNX Runtime, TensorRT)."""
        return decode_array(self.decode, logits)

    def colorize(
        self, value: np.ndarray, num_classes: int | None = None, vmax: float | None = None
    ) -> np.ndarray:
        """Paint a target or prediction as an H×W×3 uint8 RGB picture.

        Args:
            value: the map, in the task's target or prediction layout.
            num_classes: palette size for label tasks (keeps colours stable across images).
            vmax: value painted at the top of the depth colormap (defaults to the map's max).
        """
        return colorize(self.colormap, value, num_classes, vmax, self.ignore_value)


_CE = dict(type="CrossEntropyLoss", ignore_index=255)

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec(
            name="semseg",
            out_channels=None,
            target_kind="label",
            loss=_CE,
            metric=dict(type="SegMetric"),
            primary_metric="mIoU",
            higher_is_better=True,
            decode="argmax",
            trivial="majority",
            colormap="palette",
            description="semantic class id per pixel",
        ),
        TaskSpec(
            name="depth",
            out_channels=1,
            target_kind="map",
            loss=dict(type="MaskedL1Loss"),
            metric=dict(type="DepthMetric"),
            primary_metric="rmse",
            higher_is_better=False,
            decode="relu",
            trivial="mean",
            colormap="depth",
            description="depth along the optical axis in metres (0 = invalid)",
            ignore_value=0,
            scale_exponent=-1,
        ),
        TaskSpec(
            name="normals",
            out_channels=3,
            target_kind="map",
            target_channels=3,
            loss=dict(type="NormalsL1Loss"),
            metric=dict(type="NormalsMetric"),
            primary_metric="mean",
            higher_is_better=False,
            decode="unit",
            trivial="unit_mean",
            colormap="normals",
            description="camera-frame unit surface normal (x right, y up, z to viewer)",
            ignore_value=0,
            flip_channel=0,
        ),
        TaskSpec(
            name="edge",
            out_channels=1,
            target_kind="label",
            loss=dict(type="BalancedBCELoss", pos_weight=0.95),
            metric=dict(type="BoundaryMetric"),
            primary_metric="odsF",
            higher_is_better=True,
            decode="sigmoid",
            trivial="zeros",
            colormap="gray",
            description="probability that the pixel lies on an object boundary",
        ),
        TaskSpec(
            name="saliency",
            out_channels=2,
            target_kind="label",
            loss=dict(type="BalancedCrossEntropyLoss", ignore_index=255),
            metric=dict(type="SaliencyMetric"),
            primary_metric="maxF",
            higher_is_better=True,
            decode="softmax_fg",
            trivial="mean",
            colormap="gray",
            description="probability that the pixel belongs to a salient object",
        ),
        TaskSpec(
            name="human_parts",
            out_channels=None,
            target_kind="label",
            loss=_CE,
            metric=dict(type="SegMetric"),
            primary_metric="mIoU",
            higher_is_better=True,
            decode="argmax",
            trivial="majority",
            colormap="palette",
            description="body (or object) part class id per pixel, 0 = background",
            ignore_background_only=True,
        ),
        TaskSpec(
            name="disparity",
            out_channels=1,
            target_kind="map",
            loss=dict(type="MaskedL1Loss"),
            metric=dict(type="DepthMetric"),
            primary_metric="rmse",
            higher_is_better=False,
            decode="relu",
            trivial="mean",
            colormap="depth",
            description="stereo disparity in pixels (0 = invalid)",
            ignore_value=0,
            scale_exponent=1,
        ),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, with a clear error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def check_tasks(
    requested: Iterable[str], provided: Sequence[str], where: str = "the dataset"
) -> list[str]:
    """Validate a task list against what a dataset provides; returns the list in TaskSpec order.

    Raises:
        KeyError: a requested task is unknown or not provided by ``where``.
    """
    requested = list(requested)
    for name in requested:
        get_task(name)
        if name not in provided:
            raise KeyError(
                f"task {name!r} was requested but {where} provides only {list(provided)}"
            )
    if len(set(requested)) != len(requested):
        raise ValueError(f"task list {requested} names a task twice")
    return [t for t in TASKS if t in requested]


def as_prediction_layout(target):
    """A target in the layout predictions have: a one-channel 1×H×W map becomes H×W.

    Label and single-map targets are batched as 1×H×W (one channel) but predicted as H×W;
    vector maps (normals, 3×H×W) are unchanged. Works on numpy arrays and torch tensors.
    """
    return target[0] if target.ndim == 3 and target.shape[0] == 1 else target
