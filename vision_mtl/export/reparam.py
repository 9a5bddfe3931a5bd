"""Structural reparameterization at export: multi-branch blocks trained, single convolutions shipped.

The folded network (:mod:`vision_mtl.compress.folding`) computes the same function as the
multi-branch one with fewer, larger kernels — the form int8 kernels and TensorRT fuse best.
:func:`fold_branches` folds the backbone of a copy of the model, and :func:`check_folded` proves
the copy equals the original before anything is exported from it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vision_mtl.compress.folding import fold_backbone, foldable_blocks


class FoldError(RuntimeError):
    """The folded model does not compute what the multi-branch model computes."""


def fold_branches(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with its backbone's branches folded, and how many blocks
    were foldable; ``model`` itself when there is nothing to fold (it is never modified)."""
    if not foldable_blocks(model):
        return model, 0
    folded = copy.deepcopy(model)
    return folded, fold_backbone(folded)


@torch.no_grad()
def check_folded(
    original: nn.Module,
    folded: nn.Module,
    canvas: tuple[int, int],
    atol: float = 1e-4,
    samples: int = 2,
) -> float:
    """Largest difference between the two models' raw outputs on seeded images, relative to
    the outputs' scale where that exceeds 1; raises :class:`FoldError` naming the task if it
    exceeds ``atol``.

    Folding reorders float sums, so the difference grows with the outputs' magnitude (an
    untrained network's can reach 1e7); on a trained model's outputs (scale about 1-10) the
    check is the absolute ``atol``.
    """
    original, folded = original.eval(), folded.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, 3, *canvas, generator=generator)
    expected, actual = original(inputs), folded(inputs)
    worst = 0.0
    for task, value in expected.items():
        scale = max(1.0, float(value.abs().max()))
        difference = float((actual[task] - value).abs().max()) / scale
        if not difference <= atol:
            raise FoldError(
                f"the reparameterized model differs from the multi-branch one on task {task!r} "
                f"by {difference:.3g} of the output scale {scale:.3g} (> {atol}); export refused"
            )
        worst = max(worst, difference)
    return worst
