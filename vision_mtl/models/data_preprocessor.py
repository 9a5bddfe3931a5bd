"""Batching on the device: pad, stack and normalize what the collate function gathered.

Images of one batch may differ in size (test images are never resized); they are normalized and
padded to a common size, image with 0 (the mean colour) and targets with their task's ignore
value, so predictions can be cropped back to each image's original size. Padding goes at the
bottom and right (mmseg), or around the image (``pad_position="center"``: InvPT's ``PadImage``,
the top/left margin ``delta // 2``), where each image's offset is recorded in its meta as
``pad_offset`` for the crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor

from vision_mtl.models.multimae.losses import standardize_depth
from vision_mtl.registry import MODELS
from vision_mtl.tasks import get_task

PAD_POSITIONS = ("bottom_right", "center")


def pad_offset(shape: Sequence[int], size: Sequence[int], position: str) -> tuple[int, int]:
    """The (top, left) margin of a ``shape`` map padded to ``size`` at ``position``."""
    if position == "center":
        return (int(size[0]) - int(shape[0])) // 2, (int(size[1]) - int(shape[1])) // 2
    return 0, 0


def pad_to(
    tensor: torch.Tensor, size: tuple[int, int], value: float, offset: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Pad the last two dimensions up to ``size``, ``offset`` (top, left) before the map."""
    h, w = tensor.shape[-2:]
    if (h, w) == tuple(size):
        return tensor
    if h > size[0] or w > size[1]:
        raise ValueError(f"cannot pad a {h}x{w} map to the smaller size {size[0]}x{size[1]}")
    top, left = offset
    return F.pad(tensor, (left, size[1] - w - left, top, size[0] - h - top), value=value)


@MODELS.register_module()
class MultiTaskDataPreprocessor(BaseDataPreprocessor):
    """Pad, stack, move to the device and normalize a batch.

    Args:
        mean: per-channel mean of the uint8 RGB image.
        std: per-channel standard deviation.
        size: pad every batch to this (H, W) (the training canvas), if given.
        size_divisor: otherwise pad to the batch's largest size rounded up to this multiple.
        pad_position: ``"bottom_right"`` (mmseg), or ``"center"`` (InvPT's evaluation, which
            a converted InvPT checkpoint needs to reproduce the official outputs).

    Extra inputs (``data["extra_inputs"]``, from ``AddInputModality``; only ``depth``) are
    padded with 0 (invalid), standardized per image over their valid pixels as MultiMAE's
    pretraining does (0 stays 0 = invalid) and appended to ``inputs`` as channels after RGB, so
    an RGB-D batch has ``B × 4 × H × W`` inputs (read by ``MultiMAEBackbone``).
    """

    def __init__(
        self,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
        size: Sequence[int] | None = None,
        size_divisor: int | None = None,
        pad_position: str = "bottom_right",
    ) -> None:
        super().__init__()
        if pad_position not in PAD_POSITIONS:
            raise ValueError(
                f"data_preprocessor.pad_position {pad_position!r} is not one of {PAD_POSITIONS}"
            )
        self.pad_position = pad_position
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False)
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor

    def batch_size_for(self, shapes: list[tuple[int, int]]) -> tuple[int, int]:
        """The (H, W) a batch with these image shapes is padded to."""
        h = max(s[0] for s in shapes)
        w = max(s[1] for s in shapes)
        if self.size is not None:
            if h > self.size[0] or w > self.size[1]:
                raise ValueError(
                    f"an image of {h}x{w} does not fit the canvas {self.size[0]}x{self.size[1]} "
                    "set in data_preprocessor.size"
                )
            return self.size
        if self.size_divisor:
            d = self.size_divisor
            h, w = -(-h // d) * d, -(-w // d) * d
        return h, w

    def forward(self, data: dict, training: bool = False) -> dict:
        images = list(data["inputs"])
        size = self.batch_size_for([tuple(img.shape[-2:]) for img in images])
        offsets = [pad_offset(img.shape[-2:], size, self.pad_position) for img in images]
        # Normalize first, then pad with 0: the padding is the mean colour, as in mmseg.
        inputs = torch.stack(
            [
                pad_to((self.cast_data(img).float() - self.mean) / self.std, size, 0, offset)
                for img, offset in zip(images, offsets, strict=True)
            ]
        )
        extra = data.get("extra_inputs") or {}
        if extra:
            channels = [inputs]
            for name, maps in extra.items():
                if name != "depth":
                    raise ValueError(f"unknown extra input {name!r}; known: depth")
                fill = get_task("depth").ignore_value
                depth = torch.stack(
                    [
                        pad_to(self.cast_data(m).float(), size, fill, offset)
                        for m, offset in zip(maps, offsets, strict=True)
                    ]
                )
                channels.append(standardize_depth(depth, float(fill))[0])
            inputs = torch.cat(channels, dim=1)
        targets = {}
        for task, maps in (data.get("targets") or {}).items():
            fill = get_task(task).ignore_value
            targets[task] = self.cast_data(
                torch.stack(
                    [pad_to(m, size, fill, offset) for m, offset in zip(maps, offsets, strict=True)]
                )
            )
        meta = list(data.get("meta") or [])
        if self.pad_position != "bottom_right" and meta:
            meta = [dict(m, pad_offset=o) for m, o in zip(meta, offsets, strict=True)]
        return dict(inputs=inputs, targets=targets, meta=meta)
