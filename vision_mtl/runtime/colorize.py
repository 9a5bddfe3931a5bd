"""Palettes and colourisation: how targets and predictions are painted as RGB pictures.

One implementation for the training pictures (:meth:`vision_mtl.tasks.TaskSpec.colorize`,
:mod:`vision_mtl.visualization`) and the edge runtime (``deploy/infer.py`` paints each
prediction with its decoding rule's :attr:`~vision_mtl.runtime.decode.DecodeRule.colormap`), so
a PNG written on a device is the picture training draws for the same prediction.

Conventions (``docs/pictures.md`` shows them):

* pixels with no value (the label ignore id, depth ≤ 0 or not finite, a zero or non-finite
  normal) are drawn in ONE pattern, :func:`hatch`, when ``hatch_invalid=True`` (every picture
  :mod:`vision_mtl.visualization` draws): diagonal stripes of white (255, 255, 255) and grey
  (127, 127, 127). Every channel of both is odd, while every channel of a :func:`make_palette`
  colour is even (for class ids below 2**21), so no class looks like it. Without it (the
  default, kept for existing callers) they are black;
* depth is painted with turbo over a fixed range ``[vmin, vmax]`` (metres), values outside are
  clipped to the end colours, which :func:`draw_colorbar` shows with the range written under it;
* text is sized by :func:`text_height` (proportional to the tile height, 11 px at least), so a
  caption is as readable on a 96 px tile as on a 3000 px grid.

NumPy only at import; OpenCV is imported by the functions that draw with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vision_mtl.runtime.decode import Colormap

COLORMAPS: tuple[str, ...] = ("palette", "depth", "normals", "gray")
HATCH_COLORS: tuple[tuple[int, int, int], tuple[int, int, int]] = ((255, 255, 255), (127, 127, 127))
HATCH_PERIOD = 8  # pixels of one white + one grey stripe, measured along a row
MIN_TEXT_PX = 11  # smallest text height, legible on a 96 px tile
TEXT_FRACTION = 1 / 16  # text height per tile height
TEXT_COLOR = (0, 0, 0)
# A legend entry whose colour is the hatch rather than a palette colour.
HATCH = "hatch"


def make_palette(num: int) -> np.ndarray:
    """The PASCAL VOC bit-interleaved palette: distinct, stable colours for class ids.

    The first ``n`` colours do not depend on ``num``, so a palette sized for the dataset's class
    count paints the same class the same colour in every picture. Class 0 is black.
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


def hatch(shape: Sequence[int]) -> np.ndarray:
    """The no-value pattern for an H×W picture: 45° white and grey stripes anchored at (0, 0)."""
    rows, cols = np.indices(tuple(shape[:2]))
    stripe = ((rows + cols) // (HATCH_PERIOD // 2)) % 2
    return np.asarray(HATCH_COLORS, np.uint8)[stripe]


def invalid_mask(colormap: Colormap, value: np.ndarray, ignore_value: float = 255) -> np.ndarray:
    """H×W booleans: the pixels of a map that carry no value and are drawn with :func:`hatch`.

    Labels equal to ``ignore_value`` (or negative), depth ≤ 0 or not finite, normals that are
    zero or not finite (3×H×W or H×W×3), grey values not finite or equal to ``ignore_value``.
    """
    value = np.asarray(value)
    if colormap == "normals":
        normals = value.transpose(1, 2, 0) if value.shape[0] == 3 else value
        finite = np.isfinite(normals).all(axis=-1)
        return ~finite | (np.abs(np.nan_to_num(normals)).sum(axis=-1) < 1e-6)
    if colormap == "depth":
        return ~np.isfinite(value) | (np.nan_to_num(value, nan=0.0) <= 0)
    if colormap == "palette":
        return (value == ignore_value) | (value < 0)
    return ~np.isfinite(value) | (value == ignore_value)


def _turbo(scaled: np.ndarray) -> np.ndarray:
    """Values in [0, 1] through OpenCV's turbo colormap, as RGB."""
    import cv2

    index = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(index, cv2.COLORMAP_TURBO)[..., ::-1])


def colorize_depth(
    depth: np.ndarray,
    depth_max: float | None = None,
    depth_min: float = 0.0,
    hatch_invalid: bool = False,
) -> np.ndarray:
    """Depth (metres) through turbo from ``depth_min`` to ``depth_max``.

    Args:
        depth: H×W map; ≤ 0 or not finite is "no depth".
        depth_max: value at the top (red) end; defaults to the map's largest valid value. Pass a
            fixed value (the dataset's range) so pictures of different images compare.
        depth_min: value at the bottom (dark blue) end; smaller values are clipped to it.
        hatch_invalid: draw no-depth pixels with :func:`hatch` instead of black.
    """
    depth = np.asarray(depth, np.float32)
    invalid = invalid_mask("depth", depth)
    clean = np.where(invalid, 0.0, depth)
    top = depth_max or (float(clean[~invalid].max()) if (~invalid).any() else 1.0)
    rgb = _turbo((clean - depth_min) / max(top - depth_min, 1e-6))
    rgb[invalid] = hatch(depth.shape)[invalid] if hatch_invalid else 0
    return rgb


def colorize(
    colormap: Colormap,
    value: np.ndarray,
    num_classes: int | None = None,
    vmax: float | None = None,
    ignore_value: int | float = 255,
    vmin: float = 0.0,
    hatch_invalid: bool = False,
) -> np.ndarray:
    """Paint a map as an H×W×3 uint8 RGB picture.

    Args:
        colormap: ``palette`` (class ids), ``depth`` (turbo over ``[vmin, vmax]``), ``normals``
            (3×H×W or H×W×3 unit vectors as RGB = (n + 1) / 2) or ``gray`` (values in [0, 1]).
        value: the map.
        num_classes: palette size for class ids (keeps colours stable across images).
        vmax: value painted at the top of the depth colormap (defaults to the map's max).
        ignore_value: the unlabelled value of the map (255 for every label task).
        vmin: value painted at the bottom of the depth colormap.
        hatch_invalid: draw pixels without a value (:func:`invalid_mask`) with :func:`hatch`
            instead of black.

    Raises:
        ValueError: an unknown colormap.
    """
    value = np.asarray(value)
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; known colormaps: {', '.join(COLORMAPS)}")
    if colormap == "depth":
        return colorize_depth(value, vmax, vmin, hatch_invalid)
    invalid = invalid_mask(colormap, value, ignore_value)
    if colormap == "palette":
        labels = np.where(invalid, 0, value).astype(np.int64)
        out = make_palette(max(num_classes or 0, int(labels.max(initial=0)) + 1))[labels]
    elif colormap == "normals":
        normals = value.transpose(1, 2, 0) if value.shape[0] == 3 else value
        out = ((np.clip(np.nan_to_num(normals), -1, 1) + 1) * 127.5).astype(np.uint8)
    else:
        grey = np.clip(np.nan_to_num(value.astype(np.float32)), 0, 1) * 255
        out = grey.astype(np.uint8)[..., None].repeat(3, axis=2)
    out[invalid] = hatch(out.shape)[invalid] if hatch_invalid else 0
    return out


def overlay(image: np.ndarray, painted: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``painted`` blended over ``image`` (both H×W×3 uint8): ``alpha`` = weight of the paint.

    Raises:
        ValueError: ``alpha`` outside [0, 1] or pictures of different shapes.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must lie in [0, 1], got {alpha}")
    if image.shape != painted.shape:
        raise ValueError(f"cannot blend a {painted.shape} picture over a {image.shape} image")
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * painted.astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def text_height(tile_height: int) -> int:
    """Text height in pixels for a tile ``tile_height`` rows high: 1/16 of it, 11 px at least."""
    return max(MIN_TEXT_PX, round(tile_height * TEXT_FRACTION))


def _font(px: int) -> tuple[float, int]:
    """OpenCV Hershey-simplex scale and thickness whose "Hg" is about ``px`` high."""
    return px / 34.0, max(1, round(px / 14))


def text_width(text: str, px: int) -> int:
    """Width in pixels of ``text`` drawn by :func:`put_text` at height ``px``."""
    import cv2

    scale, thick = _font(px)
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]


def put_text(canvas: np.ndarray, text: str, x: int, top: int, px: int) -> None:
    """Draw ``text`` (black, anti-aliased) in ``canvas`` with its box's top-left at (x, top)."""
    import cv2

    scale, thick = _font(px)
    baseline = top + round(px * 0.78)
    cv2.putText(
        canvas, text, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOR, thick, cv2.LINE_AA
    )


def caption(width: int, text: str, px: int) -> np.ndarray:
    """A white strip ``width`` wide holding ``text`` at height ``px`` (cut at the right edge)."""
    strip = np.full((round(px * 1.5), width, 3), 255, np.uint8)
    put_text(strip, text, max(2, px // 4), px // 4, px)
    return strip


def draw_legend(
    width: int, entries: Sequence[tuple[str, Sequence[int] | str]], px: int
) -> np.ndarray:
    """A white panel ``width`` wide: a ``px``-square swatch and the name for each entry.

    Entries flow left to right and wrap; an entry's colour is an RGB triple or :data:`HATCH`.
    Each swatch has a one-pixel dark-grey frame so black and white classes show too.
    """
    pad, gap, line = max(2, px // 3), max(3, px // 2), round(px * 1.5)
    placed, x, y = [], pad, pad
    for name, color in entries:
        need = px + gap // 2 + text_width(name, px)
        if x > pad and x + need > width - pad:
            x, y = pad, y + line
        placed.append((x, y, name, color))
        x += need + gap
    panel = np.full((y + line + pad, width, 3), 255, np.uint8)
    for x, y, name, color in placed:
        box = panel[y : y + px, x : x + px]
        box[:] = 64
        inner = box[1:-1, 1:-1]
        inner[:] = hatch(inner.shape) if isinstance(color, str) else np.asarray(color, np.uint8)
        put_text(panel, name, x + px + gap // 2, y, px)
    return panel


def draw_colorbar(
    width: int,
    vmin: float,
    vmax: float,
    unit: str,
    px: int,
    colormap: Colormap = "depth",
) -> np.ndarray:
    """A white panel ``width`` wide: the colormap from ``vmin`` (left) to ``vmax`` (right).

    The bar's first column is the colour of ``vmin`` and its last that of ``vmax`` (for depth:
    :func:`colorize_depth` with the same range); the two ends and the middle are written under
    it with ``unit``.
    """
    pad = max(2, px // 2)
    length = max(width - 2 * pad, 2)
    scaled = np.linspace(0.0, 1.0, length, dtype=np.float32)[None]
    if colormap == "depth":
        colors = _turbo(scaled)
    else:
        colors = (scaled * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    bar_h = px
    panel = np.full((pad + bar_h + round(px * 1.5) + pad // 2, width, 3), 255, np.uint8)
    panel[pad : pad + bar_h, pad : pad + length] = colors
    labels = [f"{vmin:g}", f"{(vmin + vmax) / 2:g}", f"{vmax:g} {unit}".strip()]
    top = pad + bar_h + px // 4
    widths = [text_width(t, px) for t in labels]
    put_text(panel, labels[0], pad, top, px)
    if sum(widths) + 2 * px < length:
        put_text(panel, labels[1], pad + (length - widths[1]) // 2, top, px)
    put_text(panel, labels[2], max(pad, pad + length - widths[2]), top, px)
    return panel
