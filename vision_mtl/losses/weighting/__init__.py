"""Loss weighting and gradient aggregation strategies (``MultiTaskModel(weighting=...)``).

Registered in :data:`vision_mtl.registry.WEIGHTINGS`; docs/weighting.md compares them.
"""

from vision_mtl.losses.weighting.adaptive import DBMTL, GradNorm
from vision_mtl.losses.weighting.base import Fixed, LossWeighting, Weighting
from vision_mtl.losses.weighting.gradient import (
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradientWeighting,
    NashMTL,
    PCGrad,
    TorchJDWeighting,
    UPGrad,
)
from vision_mtl.losses.weighting.loss_based import DWA, FAMO, RLW, LogSum, Uncertainty

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "DBMTL",
    "DWA",
    "FAMO",
    "Fixed",
    "GradNorm",
    "GradientWeighting",
    "IMTLG",
    "LogSum",
    "LossWeighting",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "RLW",
    "TorchJDWeighting",
    "UPGrad",
    "Uncertainty",
    "Weighting",
]
