"""Per-task losses (registered in the model registry) and the weighting strategies that combine
them (:mod:`vision_mtl.losses.weighting`, registered in ``WEIGHTINGS``)."""

from vision_mtl.losses.task_losses import (
    BalancedBCELoss,
    BalancedCrossEntropyLoss,
    CrossEntropyLoss,
    MaskedL1Loss,
    NormalsL1Loss,
)
from vision_mtl.losses.weighting import Weighting

__all__ = [
    "BalancedBCELoss",
    "BalancedCrossEntropyLoss",
    "CrossEntropyLoss",
    "MaskedL1Loss",
    "NormalsL1Loss",
    "Weighting",
]
