"""Palettes and colourisation: how targets and predictions are painted as RGB pictures.

One implementation for the training pictures (:meth:`vision_mtl.tasks.TaskSpec.colorize`,
:mod:`vision_mtl.visualization`) and the edge runtime (``deploy/infer.py`` paints each
prediction with its decoding rule's :attr:`~vision_mtl.runtime.decode.DecodeRule.colormap`), so
a PNG written on a device is the picture training draws for the same prediction.

NumPy only; the depth colormap uses OpenCV, imported when it is drawn.
"""

from __future__ import annotations

import numpy as np

from vision_mtl.runtime.decode import Colormap

COLORMAPS: tuple[str, ...] = ("palette", "depth", "normals", "gray")


def make_palette(num: int) -> np.ndarray:
    """The PASCAL VOC bit-interleaved palette: distinct, stable colours for class ids.

    The first ``n`` colours do not depend on ``num``, so a palette sized for the dataset's class
    count paints the same class the same colour in every picture.
    """
    palette = np.zeros((max(num, 1), 3), np.uint8)
    for label in range(len(palette)):
        c, shift = label, 7
        while c:
            for channel in range(3):
                palette[label, channel] |= ((c >> channel) & 1) << shift
            c >>= 3
            shift -= 1
    return palette


def colorize_depth(depth: np.ndarray, depth_max: float | None = None) -> np.ndarray:
    """Map depth (metres, 0 = invalid) through a perceptual colormap; invalid pixels are black."""
    import cv2

    depth = np.asarray(depth, np.float32)
    valid = depth > 0
    top = depth_max or (float(depth[valid].max()) if valid.any() else 1.0)
    scaled = np.clip(depth / max(top, 1e-6), 0, 1)
    rgb = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    rgb = rgb.copy()
    rgb[~valid] = 0
    return rgb


def colorize(
    colormap: Colormap,
    value: np.ndarray,
    num_classes: int | None = None,
    vmax: float | None = None,
    ignore_value: int | float = 255,
) -> np.ndarray:
    """Paint a map as an H×W×3 uint8 RGB picture.

    Args:
        colormap: ``palette`` (class ids; ``ignore_value`` pixels black), ``depth`` (turbo,
            0 = invalid = black), ``normals`` (3×H×W or H×W×3 unit vectors as RGB) or ``gray``
            (values in [0, 1]).
        value: the map.
        num_classes: palette size for class ids (keeps colours stable across images).
        vmax: value painted at the top of the depth colormap (defaults to the map's max).
        ignore_value: the unlabelled class id of a label map (255 for every label task).

    Raises:
        ValueError: an unknown colormap.
    """
    value = np.asarray(value)
    if colormap == "palette":
        palette = make_palette(max(num_classes or 0, int(value.max(initial=0)) + 1))
        out = np.zeros((*value.shape, 3), np.uint8)
        valid = value != ignore_value
        out[valid] = palette[value[valid].astype(np.int64)]
        return out
    if colormap == "normals":
        normals = value.transpose(1, 2, 0) if value.shape[0] == 3 else value
        return ((np.clip(normals, -1, 1) + 1) * 127.5).astype(np.uint8)
    if colormap == "depth":
        return colorize_depth(value, vmax)
    if colormap == "gray":
        return (
            (np.clip(value.astype(np.float32), 0, 1) * 255)
            .astype(np.uint8)[..., None]
            .repeat(3, axis=2)
        )
    raise ValueError(f"unknown colormap {colormap!r}; known colormaps: {', '.join(COLORMAPS)}")
