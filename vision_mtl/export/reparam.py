"""Structural reparameterization at export: multi-branch blocks trained, single convolutions shipped.

MobileOne, RepViT, FastViT and RepGhost blocks train with parallel branches (3×3, 1×1, identity,
each with its BatchNorm) that are linear, so after training they fold into one convolution per
block. The folded network computes the same function with fewer, larger kernels — the form int8
kernels and TensorRT fuse best. timm implements the folding for each of its models
(``reparameterize()``, ``switch_to_deploy()``, ``fuse()`` on the blocks);
:func:`fold_branches` applies it, through timm's public ``reparameterize_model``, to the
backbone of a copy of the model, and :func:`check_folded` proves the copy equals the original
before anything is exported from it.

Only the backbone's timm model is folded: the toolbox's own decoders are plain conv–BN–ReLU
stacks, and timm's walker would mistake a submodule named ``fuse`` (the baseline decoder's
fusion conv) for a fusing method.
"""

from __future__ import annotations

import copy

import torch
from timm.utils import reparameterize_model
from torch import nn

#: the methods timm's reparameterization calls on a block that can fold
FOLD_METHODS = ("fuse", "reparameterize", "switch_to_deploy")


class FoldError(RuntimeError):
    """The folded model does not compute what the multi-branch model computes."""


def foldable_blocks(model: nn.Module) -> int:
    """How many blocks of ``model``'s timm backbone timm can fold (0: nothing to fold)."""
    inner = getattr(getattr(model, "backbone", None), "model", None)
    if inner is None:
        return 0
    return sum(
        1
        for module in inner.modules()
        if module is not inner
        and any(callable(getattr(module, name, None)) for name in FOLD_METHODS)
    )


def fold_branches(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with its backbone's branches folded, and how many blocks
    were foldable; ``model`` itself when there is nothing to fold (it is never modified)."""
    count = foldable_blocks(model)
    if not count:
        return model, 0
    folded = copy.deepcopy(model).eval()
    reparameterize_model(folded.backbone.model, inplace=True)
    return folded, count


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
