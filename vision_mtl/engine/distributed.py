"""Distributed training on machines without GPUs.

mmengine 0.10.7's ``pytorch`` launcher always calls ``torch.cuda.set_device`` and its DDP wrapper
always passes ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only machine, where DDP is still
useful (and is how the test suite exercises multi-process training and evaluation). Here the
process group is started with gloo before the Runner looks, and the wrapper drops ``device_ids``
for CPU modules. With CUDA present nothing here is used.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from vision_mtl.registry import MODEL_WRAPPERS, SCOPE


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel that accepts mmengine's ``device_ids`` for a CPU module."""

    def __init__(self, module: torch.nn.Module, device_ids=None, **kwargs) -> None:
        on_cpu = all(p.device.type == "cpu" for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)


MODEL_WRAPPERS.register_module()(CPUDistributedDataParallel)


def prepare_cpu_distributed(cfg) -> None:
    """Start a gloo process group from torchrun's environment and pick the CPU DDP wrapper."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise RuntimeError(
                f"--launcher pytorch expects torchrun's environment; {key} is not set. "
                "Start with: python -m torch.distributed.run --nproc_per_node=N tools/train.py ..."
            )
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    cfg.model_wrapper_cfg = dict(type=f"{SCOPE}.CPUDistributedDataParallel")


class SlimmableDistributedDataParallel(CPUDistributedDataParallel):
    """DDP wrapper whose train step is the sandwich rule of a slimmable model.

    ``MMDistributedDataParallel.train_step`` runs one forward pass and never calls the module's
    own ``train_step``; a :class:`~vision_mtl.models.SlimmableMultiTaskModel` trains several
    width configurations per step, so its DDP wrapper runs the module's ``sandwich_step``
    through itself (gradients
    reduced once, after the last configuration; the configurations drawn from the iteration
    number, so they agree on every rank). :class:`~vision_mtl.engine.runner.VisionMTLRunner`
    picks this wrapper for slimmable models.
    """

    def train_step(self, data, optim_wrapper) -> dict:
        """One sandwich-rule iteration through the DDP wrapper."""
        return self.module.sandwich_step(self, data, optim_wrapper)


MODEL_WRAPPERS.register_module()(SlimmableDistributedDataParallel)


class WeightedDistributedDataParallel(CPUDistributedDataParallel):
    """DDP wrapper whose train step is the model's weighting step.

    With a weighting other than ``Fixed`` (:mod:`vision_mtl.losses.weighting`), the model's
    ``weighted_step`` combines the per-task losses or gradients before the update; loss-based
    strategies run their forward pass through this wrapper (gradients reduced by DDP as usual),
    gradient-based ones reduce the task gradients themselves before combining them
    (:mod:`vision_mtl.models.weighted_step`). :class:`~vision_mtl.engine.runner.VisionMTLRunner`
    picks this wrapper for such models.
    """

    def train_step(self, data, optim_wrapper) -> dict:
        """One weighting-step iteration through the DDP wrapper."""
        return self.module.weighted_step(self, data, optim_wrapper)


MODEL_WRAPPERS.register_module()(WeightedDistributedDataParallel)
