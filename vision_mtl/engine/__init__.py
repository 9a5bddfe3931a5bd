"""Training-engine glue around mmengine: atomic checkpoints, strict loading, locked work dirs,
guarded optimizer steps and hooks.

Importing this package registers nothing with mmengine or torch; :func:`register_all_modules`
does, once, and the Runner builders (``vision_mtl.apis``) call it.
"""

from vision_mtl.engine.checkpoint import (
    AtomicCheckpointHook,
    AtomicLocalBackend,
    register_atomic_backend,
)
from vision_mtl.engine.distributed import (
    CPUDistributedDataParallel,
    SlimmableDistributedDataParallel,
    prepare_cpu_distributed,
)
from vision_mtl.engine.fsdp import VisionMTLFlexibleRunner, VisionMTLFSDPStrategy
from vision_mtl.engine.hooks import PredictionGridHook, ProgressBarHook, TaskCheckHook
from vision_mtl.engine.multimae_hook import MultiMAEGridHook
from vision_mtl.engine.optim import GuardedOptimWrapper
from vision_mtl.engine.runner import CheckpointMismatchError, VisionMTLRunner
from vision_mtl.engine.tensorboard import ValPredictionGridHook
from vision_mtl.engine.workdir_lock import WorkDirLock, WorkDirLockedError
from vision_mtl.utils import allow_checkpoint_types


def register_all_modules() -> None:
    """Everything vision_mtl registers outside its own registries; idempotent.

    The atomic checkpoint backend (mmengine's file backends) and the checkpoint types
    ``torch.load(weights_only=True)`` may read (torch's safe globals, HistoryBuffer's pickling).
    The registries themselves need no call: each names the package that fills it.
    """
    register_atomic_backend()
    allow_checkpoint_types()


__all__ = [
    "AtomicCheckpointHook",
    "AtomicLocalBackend",
    "CheckpointMismatchError",
    "CPUDistributedDataParallel",
    "GuardedOptimWrapper",
    "MultiMAEGridHook",
    "PredictionGridHook",
    "ProgressBarHook",
    "TaskCheckHook",
    "ValPredictionGridHook",
    "VisionMTLFlexibleRunner",
    "VisionMTLFSDPStrategy",
    "VisionMTLRunner",
    "WorkDirLock",
    "WorkDirLockedError",
    "allow_checkpoint_types",
    "prepare_cpu_distributed",
    "SlimmableDistributedDataParallel",
    "register_all_modules",
    "register_atomic_backend",
]
