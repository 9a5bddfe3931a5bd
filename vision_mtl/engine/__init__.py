"""Training-engine glue around mmengine: atomic checkpoints, strict loading, locked work dirs,
guarded optimizer steps and hooks."""

from vision_mtl.engine.checkpoint import (
    AtomicCheckpointHook,
    AtomicLocalBackend,
    allow_mmengine_checkpoint_types,
    atomic_write_bytes,
)
from vision_mtl.engine.distributed import CPUDistributedDataParallel, prepare_cpu_distributed
from vision_mtl.engine.hooks import PredictionGridHook, ProgressBarHook, TaskCheckHook
from vision_mtl.engine.optim import GuardedOptimWrapper
from vision_mtl.engine.runner import CheckpointMismatchError, VisionMTLRunner
from vision_mtl.engine.workdir_lock import WorkDirLock, WorkDirLockedError

__all__ = [
    "CheckpointMismatchError",
    "GuardedOptimWrapper",
    "VisionMTLRunner",
    "WorkDirLock",
    "WorkDirLockedError",
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
