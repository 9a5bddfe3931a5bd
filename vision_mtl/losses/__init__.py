"""Per-task losses (registered in the model registry)."""

from vision_mtl.losses.task_losses import (
    BalancedBCELoss,
    BalancedCrossEntropyLoss,
    CrossEntropyLoss,
    MaskedL1Loss,
    NormalsL1Loss,
)

__all__ = [
    "BalancedBCELoss",
    "BalancedCrossEntropyLoss",
    "CrossEntropyLoss",
    "MaskedL1Loss",
    "NormalsL1Loss",
]
