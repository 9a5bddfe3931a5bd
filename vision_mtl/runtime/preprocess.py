"""Pre-processing for an exported graph: read an image, check it fits, normalize and pad it.

The training pre-processing in NumPy (:class:`~vision_mtl.models.MultiTaskDataPreprocessor`):
an H×W×3 uint8 RGB image is normalized with the sidecar's mean and std, transposed to 3×H×W
and padded at the bottom/right with 0 (after normalization) to the exported canvas. Outputs are
cropped back to the image's size after decoding (:meth:`~vision_mtl.runtime.Deployment.postprocess`).
This is the ``pad`` mode; images larger than the canvas take the ``resize`` or ``slide`` mode of
:mod:`vision_mtl.runtime.tiling`, which builds on these functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from vision_mtl.runtime.sidecar import DeploymentError


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB, with an error naming the file if it cannot.

    The one reader of user images (``vision_mtl.apis.inference`` re-exports it): OpenCV, colour,
    BGR → RGB; grey images are repeated over three channels, alpha is dropped, 16-bit images are
    scaled to 8.

    Raises:
        FileNotFoundError: the file is missing or OpenCV cannot decode it.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read an image from {str(path)!r}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_image(image: np.ndarray, canvas: tuple[int, int] | None, name: str) -> np.ndarray:
    """``image`` as an array if a graph exported at ``canvas`` can take it padded (``pad`` mode).

    Args:
        image: the image.
        canvas: the exported (H, W); ``None`` checks the format only (the ``resize`` and
            ``slide`` modes of :mod:`vision_mtl.runtime.tiling` take any size).
        name: how messages name it (``"image 'a.png'"``, ``"image 0"``).

    Raises:
        DeploymentError: not H×W×3 uint8 RGB, or larger than the canvas.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DeploymentError(f"{name} must be H×W×3 uint8 RGB, got {image.shape} {image.dtype}")
    if canvas is None:
        return image
    height, width = canvas
    h, w = image.shape[:2]
    if h > height or w > width:
        raise DeploymentError(
            f"{name} is {h}x{w}, larger than the exported canvas {height}x{width}; use mode "
            "'resize' (scale to fit) or 'slide' (overlapping windows) instead of 'pad', or "
            "export with --shape"
        )
    return image


def normalize_and_pad(
    images: Sequence[np.ndarray],
    mean: Sequence[float],
    std: Sequence[float],
    canvas: tuple[int, int],
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The graph's input batch (B×3×H×W float32) and each image's (h, w).

    Each image is checked (:func:`check_image`, named by its position), normalized per channel
    as ``(pixel - mean) / std`` in float32 and written at the top-left of a zero canvas.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    height, width = canvas
    batch = np.zeros((len(images), 3, height, width), np.float32)
    sizes = []
    for i, image in enumerate(images):
        image = check_image(image, canvas, f"image {i}")
        h, w = image.shape[:2]
        batch[i, :, :h, :w] = ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1)
        sizes.append((h, w))
    return batch, sizes
