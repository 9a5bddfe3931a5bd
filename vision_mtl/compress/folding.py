"""Fold a backbone's multi-branch blocks into single convolutions (structural reparameterization).

MobileOne, RepViT, FastViT and RepGhost blocks train with parallel linear branches (3×3, 1×1,
identity, each with its BatchNorm) that fold into one convolution per block after training.
timm implements the folding for each of its models (``reparameterize()``,
``switch_to_deploy()``, ``fuse()`` on the blocks) and applies it through its public
``reparameterize_model``. The export ships the folded form
(:mod:`vision_mtl.export.reparam`, which also proves it equal to the multi-branch model), and
quantization-aware training trains the folded form it will ship in
(:mod:`vision_mtl.compress.qat`).

Only the backbone's timm model is folded: the toolbox's own decoders are plain conv–BN–ReLU
stacks, and timm's walker would mistake a submodule named ``fuse`` (the baseline decoder's
fusion conv) for a fusing method.
"""

from __future__ import annotations

from timm.utils import reparameterize_model
from torch import nn

#: the methods timm's reparameterization calls on a block that can fold
FOLD_METHODS = ("fuse", "reparameterize", "switch_to_deploy")


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


def fold_backbone(model: nn.Module) -> int:
    """Fold ``model``'s backbone in place (eval mode); returns how many blocks could fold."""
    count = foldable_blocks(model)
    if count:
        model.eval()
        reparameterize_model(model.backbone.model, inplace=True)
    return count
