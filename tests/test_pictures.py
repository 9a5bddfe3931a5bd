"""Pictures a person can read: legend, colour bar, no-value hatch, rows, caption size, overlay."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from vision_mtl.engine.hooks import PredictionGridHook
from vision_mtl.runtime.colorize import (
    HATCH,
    HATCH_COLORS,
    caption,
    colorize,
    colorize_depth,
    draw_colorbar,
    draw_legend,
    hatch,
    make_palette,
    overlay,
    text_height,
)
from vision_mtl.visualization import make_grid, value_range

H, W = 24, 32
FACTOR = 8  # make_grid enlarges 24 rows to 192


def _labels() -> np.ndarray:
    labels = np.zeros((H, W), np.int64)
    labels[:, 8:16], labels[:, 16:24], labels[:, 24:] = 1, 3, 5
    return labels


def _depth() -> np.ndarray:
    return np.tile(np.linspace(1.0, 6.0, W, dtype=np.float32), (H, 1))


def _image() -> np.ndarray:
    return np.full((H, W, 3), 90, np.uint8)


def _key(grid: np.ndarray, column: int, rows: int) -> np.ndarray:
    """The key panel under ``column`` of a grid with ``rows`` map rows of tiles."""
    px = text_height(H * FACTOR)
    body = rows * (round(px * 1.5) + H * FACTOR)
    return grid[body:, column * W * FACTOR : (column + 1) * W * FACTOR]


def _has_swatch(panel: np.ndarray, color, size: int) -> bool:
    """Whether ``panel`` holds a solid ``size``×``size`` square of ``color``."""
    mask = (panel == np.asarray(color, np.uint8)).all(axis=-1)
    windows = np.lib.stride_tricks.sliding_window_view(mask, (size, size))
    return bool(windows.all(axis=(-1, -2)).any())


def test_palette_cannot_produce_the_hatch_colours():
    palette = make_palette(4096)
    assert (palette % 2 == 0).all()  # every palette channel is even ...
    assert (np.asarray(HATCH_COLORS) % 2 == 1).all()  # ... every hatch channel odd
    pattern = hatch((16, 16))
    assert {tuple(c) for c in pattern.reshape(-1, 3)} == set(HATCH_COLORS)


def test_legend_lists_each_class_with_its_colour_swatch():
    labels = _labels()
    names = ["floor", "wall", "ceiling", "sphere", "box", "cylinder", "cone"]
    meta = {"class_names": {"semseg": names}, "num_classes": {"semseg": 7}}
    grid = make_grid(_image(), {"semseg": labels}, meta=meta)
    key = _key(grid, 1, rows=1)
    px = text_height(H * FACTOR)
    palette = make_palette(7)
    for color in palette:  # 7 classes <= ALL_CLASSES_UP_TO: all are listed, present or not
        assert _has_swatch(key, color, px - 2)
    expected = draw_legend(W * FACTOR, list(zip(names, map(tuple, palette))), px)
    np.testing.assert_array_equal(key[: expected.shape[0]], expected)
    # Many classes: only those present, named "class i" without names.
    many = make_grid(_image(), {"semseg": labels * 7}, num_classes={"semseg": 40})
    key = _key(many, 1, rows=1)
    palette = make_palette(40)
    for i in (0, 7, 21, 35):
        assert _has_swatch(key, palette[i], px - 2)
    assert not _has_swatch(key, palette[1], px - 2)
    entries = [(f"class {i}", tuple(palette[i])) for i in (0, 7, 21, 35)]
    expected = draw_legend(W * FACTOR, entries, px)
    np.testing.assert_array_equal(key[: expected.shape[0]], expected)


def test_colour_bar_shows_the_fixed_range_and_its_end_colours():
    depth = _depth()
    meta = {"dataset": "SynthScenesDataset"}  # fixed range 0.5-8 m
    grid = make_grid(_image(), {"depth": depth}, meta=meta)
    key = _key(grid, 1, rows=1)
    px = text_height(H * FACTOR)
    width = W * FACTOR
    bar = draw_colorbar(width, 0.5, 8.0, "m", px)
    np.testing.assert_array_equal(key[: bar.shape[0]], bar)
    pad = max(2, px // 2)
    row = bar[pad + px // 2]
    np.testing.assert_array_equal(row[pad], colorize_depth(np.array([[0.5]]), 8.0, 0.5)[0, 0])
    np.testing.assert_array_equal(
        row[width - pad - 1], colorize_depth(np.array([[8.0]]), 8.0)[0, 0]
    )
    text = bar[pad + px :]
    assert (text[:, : width // 4] < 100).any() and (text[:, -width // 4 :] < 100).any()
    other = draw_colorbar(width, 0.5, 6.0, "m", px)
    assert not np.array_equal(other[pad + px :, -width // 4 :], text[:, -width // 4 :])
    # The range is the dataset's, not the picture's: 6 m is painted as 6 of 8 m.
    tile = grid[round(px * 1.5) : round(px * 1.5) + H * FACTOR, width : 2 * width]
    np.testing.assert_array_equal(tile[0, -1], colorize_depth(np.array([[6.0]]), 8.0, 0.5)[0, 0])
    override = make_grid(_image(), {"depth": depth}, meta=meta, value_ranges={"depth": (1, 6)})
    np.testing.assert_array_equal(
        _key(override, 1, rows=1)[: bar.shape[0]], draw_colorbar(width, 1, 6, "m", px)
    )


def test_hatch_marks_pixels_without_a_value_never_a_class_colour():
    labels = _labels()
    labels[4:12, 4:28] = 255
    ignored = labels == 255
    painted = colorize("palette", labels, 40, hatch_invalid=True)
    np.testing.assert_array_equal(painted[ignored], hatch((H, W))[ignored])
    assert (colorize("palette", labels, 40)[ignored] == 0).all()  # the default stays black
    class_colors = {tuple(c) for c in make_palette(256)}
    assert not {tuple(c) for c in painted[ignored]} & class_colors
    depth = _depth()
    depth[0, :3] = [0.0, -1.0, np.nan]
    np.testing.assert_array_equal(
        colorize("depth", depth, vmax=8, hatch_invalid=True)[0, :3], hatch((H, W))[0, :3]
    )
    normals = np.zeros((3, H, W), np.float32)
    normals[2, :, 5:] = 1.0
    np.testing.assert_array_equal(
        colorize("normals", normals, hatch_invalid=True)[:, :5], hatch((H, W))[:, :5]
    )
    # In the grid: the ignored block is hatched (both stripes) and listed in the legend.
    grid = make_grid(_image(), {"semseg": labels}, {"semseg": labels}, {"semseg": 7})
    px = text_height(H * FACTOR)
    top = round(px * 1.5)
    tile = grid[top : top + H * FACTOR, W * FACTOR : 2 * W * FACTOR]
    block = tile[4 * FACTOR : 12 * FACTOR, 4 * FACTOR : 28 * FACTOR].reshape(-1, 3)
    assert {tuple(c) for c in block} == set(HATCH_COLORS)
    key = _key(grid, 1, rows=2)
    inner = draw_legend(px + 2, [("", HATCH)], px)  # the hatch swatch alone
    swatch = inner[max(2, px // 3) + 1 : max(2, px // 3) + px - 1, max(2, px // 3) + 1]
    assert any(
        np.array_equal(key[r : r + len(swatch), c], swatch)
        for r in range(key.shape[0] - len(swatch))
        for c in range(key.shape[1])
    )


def test_no_ground_truth_row_for_photos():
    pred = {"semseg": _labels(), "depth": _depth()}
    meta = {"dataset": "SynthScenesDataset"}
    photo = make_grid(_image(), pred, None, {"semseg": 7}, meta=meta)
    labelled = make_grid(_image(), pred, pred, {"semseg": 7}, meta=meta)
    px = text_height(H * FACTOR)
    assert labelled.shape[0] - photo.shape[0] == round(px * 1.5) + H * FACTOR
    assert photo.shape[1] == labelled.shape[1] == 3 * W * FACTOR
    # The photo's first row is the input, its caption then the image itself.
    np.testing.assert_array_equal(photo[round(px * 1.5), :W], np.full((W, 3), 90, np.uint8))


@pytest.mark.parametrize("tile", [96, 480, 3000])
def test_caption_height_scales_with_the_tile(tile):
    px = text_height(tile)
    assert px >= 11 and px == max(11, round(tile / 16))
    strip = caption(tile, "semseg prediction", px)
    assert strip.shape[0] == round(px * 1.5)
    rows = np.nonzero((strip < 128).any(axis=(1, 2)))[0]  # rows with text in them
    assert len(rows) >= 0.6 * px  # the glyphs are as tall as the rule says


def test_grid_captions_grow_with_the_image():
    heights = []
    for size in (96, 960):
        image = np.full((size, size * 4 // 3, 3), 90, np.uint8)
        grid = make_grid(image, {"semseg": np.zeros((size, size * 4 // 3), np.int64)}, None)
        heights.append(int(np.argmax((grid[:, 0] == 90).all(axis=-1))))  # first image row
    assert heights == [round(text_height(192) * 1.5), round(text_height(960) * 1.5)]
    assert heights[1] >= 4 * heights[0]


def test_overlay_blends_the_map_over_the_input():
    image = _image()
    labels = _labels()
    grid = make_grid(image, {"semseg": labels}, None, {"semseg": 7}, overlay_alpha=0.25)
    px = text_height(H * FACTOR)
    top = round(px * 1.5)
    tile = grid[top : top + H * FACTOR, W * FACTOR : 2 * W * FACTOR]
    painted = np.kron(colorize("palette", labels, 7), np.ones((FACTOR, FACTOR, 1), np.uint8))
    base = np.full_like(painted, 90)
    np.testing.assert_array_equal(tile, overlay(base, painted, 0.25))
    np.testing.assert_array_equal(overlay(base, painted, 0.0), base)
    np.testing.assert_array_equal(overlay(base, painted, 1.0), painted)
    with pytest.raises(ValueError, match="alpha"):
        overlay(base, painted, 1.5)


def test_grey_maps_keep_their_zero_to_one_bar():
    probabilities = np.full((H, W), 0.3, np.float32)
    assert value_range("edge", [probabilities]) == (0.0, 1.0)
    grid = make_grid(_image(), {"edge": probabilities})
    px = text_height(H * FACTOR)
    bar = draw_colorbar(W * FACTOR, 0.0, 1.0, "", px, "gray")
    np.testing.assert_array_equal(_key(grid, 1, rows=1)[: bar.shape[0]], bar)


def test_prediction_grid_hook_names_classes_from_the_test_dataset(tmp_path):
    names = ["floor", "wall", "ceiling", "sphere", "box", "cylinder", "cone"]
    meta = {"dataset": "SynthScenesDataset", "class_names": {"semseg": names}}
    dataset = SimpleNamespace(metainfo=meta)
    model = SimpleNamespace(num_classes={"semseg": 7})
    runner = SimpleNamespace(
        model=model, _test_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset))
    )
    hook = PredictionGridHook(str(tmp_path))
    hook.before_test_epoch(runner)
    labels = torch.as_tensor(_labels())
    batch = {"inputs": [torch.as_tensor(_image()).permute(2, 0, 1)]}
    sample = {"pred": {"semseg": labels}, "gt": {"semseg": labels}, "meta": {"name": "a"}}
    hook.after_test_iter(runner, 0, batch, [sample])
    grid = cv2.cvtColor(cv2.imread(str(tmp_path / "a.png")), cv2.COLOR_BGR2RGB)
    expected = draw_legend(
        W * FACTOR, list(zip(names, map(tuple, make_palette(7)))), text_height(H * FACTOR)
    )
    np.testing.assert_array_equal(_key(grid, 1, rows=2)[: expected.shape[0]], expected)
