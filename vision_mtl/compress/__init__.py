"""Model compression: structural channel pruning with a restorable record."""

from vision_mtl.compress.greedy import greedy_prune
from vision_mtl.compress.pruning import (
    IMPORTANCES,
    RECORD_FORMAT,
    PruningError,
    apply_record,
    protected_layers,
    prune,
)

__all__ = [
    "IMPORTANCES",
    "RECORD_FORMAT",
    "PruningError",
    "apply_record",
    "greedy_prune",
    "protected_layers",
    "prune",
]
