"""Training-engine glue around mmengine: safe, atomic checkpoints and hooks."""

from vision_mtl.engine.checkpoint import (
    AtomicLocalBackend,
    allow_mmengine_checkpoint_types,
    atomic_write_bytes,
)
from vision_mtl.engine.hooks import PredictionGridHook, ProgressBarHook, TaskCheckHook

__all__ = [
    "PredictionGridHook",
    "ProgressBarHook",
    "TaskCheckHook",
    "AtomicLocalBackend",
    "allow_mmengine_checkpoint_types",
    "atomic_write_bytes",
]
