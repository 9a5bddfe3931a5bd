"""Test-time augmentation: horizontal flip and multi-scale, averaged in logit space.

Each view's raw outputs are brought back to the input's frame before averaging: a flipped view's
outputs are flipped back, and the channel a flip negates (normals' x, ``TaskSpec.flip_channel``)
changes sign again, so the averaged prediction of a mirrored image is the mirrored prediction —
never mirror-wrong normals. Scaled views are resized back to the input size (bilinear on logits)
before the average; decoding happens once, after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vision_mtl.tasks import get_task


def check_tta(tta: dict | None) -> dict | None:
    """``tta`` as ``dict(flip=bool, scales=[float, ...])``, or ``None``; bad values named."""
    if tta is None:
        return None
    unknown = set(tta) - {"flip", "scales"}
    if unknown:
        raise KeyError(f"tta: unknown key(s) {sorted(unknown)}; expected 'flip' and 'scales'")
    scales = [float(s) for s in tta.get("scales", [1.0])]
    if not scales or any(not 0 < s <= 4 for s in scales):
        raise ValueError(f"tta.scales must be a non-empty list of factors in (0, 4], got {scales}")
    return dict(flip=bool(tta.get("flip", False)), scales=scales)


def _scaled_size(size: Sequence[int], scale: float, divisor: int) -> tuple[int, int]:
    """``size × scale`` rounded to the preprocessor's size divisor (what the backbone accepts)."""
    return tuple(max(divisor, round(s * scale / divisor) * divisor) for s in size)


def tta_logits(
    logits_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    inputs: torch.Tensor,
    tasks: Sequence[str],
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    divisor: int = 1,
) -> dict[str, torch.Tensor]:
    """The mean over views of ``logits_fn``'s per-task outputs, in ``inputs``' frame and size.

    Args:
        logits_fn: images (B×3×H×W) → task → raw outputs at the images' size.
        inputs: the preprocessed batch.
        tasks: the tasks ``logits_fn`` returns.
        flip: add the horizontally flipped view of every scale.
        scales: input scale factors (1.0 = as given).
        divisor: the size multiple the model needs (the preprocessor's ``size_divisor``).
    """
    size = tuple(inputs.shape[-2:])
    total: dict[str, torch.Tensor] = {}
    views = 0
    for scale in scales:
        scaled_size = _scaled_size(size, scale, divisor)
        x = inputs
        if scaled_size != size:
            x = F.interpolate(inputs, size=scaled_size, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            outputs = logits_fn(x.flip(-1) if flipped else x)
            for task in tasks:
                out = outputs[task]
                if flipped:
                    out = out.flip(-1)
                    channel = get_task(task).flip_channel
                    if channel is not None:
                        sign = torch.ones(out.shape[1], 1, 1, dtype=out.dtype, device=out.device)
                        sign[channel] = -1
                        out = out * sign
                if tuple(out.shape[-2:]) != size:
                    out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
                total[task] = out if task not in total else total[task] + out
            views += 1
    return {task: value / views for task, value in total.items()}
