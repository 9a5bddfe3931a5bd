"""Training-engine glue around mmengine: safe, atomic checkpoints and hooks."""

from vision_mtl.engine.checkpoint import (
    AtomicCheckpointHook,
    AtomicLocalBackend,
    allow_mmengine_checkpoint_types,
    atomic_write_bytes,
)
from vision_mtl.engine.distributed import CPUDistributedDataParallel, prepare_cpu_distributed
from vision_mtl.engine.hooks import PredictionGridHook, ProgressBarHook, TaskCheckHook

__all__ = [
    "AtomicCheckpointHook",
    "CPUDistributedDataParallel",
    "prepare_cpu_distributed",
    "PredictionGridHook",
    "ProgressBarHook",
    "TaskCheckHook",
    "AtomicLocalBackend",
    "allow_mmengine_checkpoint_types",
    "atomic_write_bytes",
]
