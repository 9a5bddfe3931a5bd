"""Fully sharded data parallel training through mmengine's FlexibleRunner and FSDP strategy.

The ViT-L recipes hold a 300M-parameter encoder whose AdamW state alone is 3.6 GB per process
under DDP; FSDP shards parameters, gradients and optimizer state across the processes. mmengine
provides the pieces (``FlexibleRunner``, ``FSDPStrategy``, ``MMFullyShardedDataParallel``); what
this module adds keeps the toolbox's guarantees under them:

* **Checkpoints load into the plain model.** The strategy saves the full (unsharded) state dict
  on rank 0 (``state_dict_cfg='full'``), written through a temporary file and renamed, so
  ``tools/test.py``, ``init_model``, export and pruning read an FSDP checkpoint like any other.
  Resuming an FSDP run loads the same file back into the shards (optimizer state included).
* **Strict loading**: a checkpoint that does not fit the model is refused before anything is
  loaded, with the keys named (:func:`~vision_mtl.engine.runner.check_checkpoint_fits` against
  the plain model's shapes, recorded before it was sharded).
* **CPU processes** (gloo): mmengine passes ``device_id=LOCAL_RANK``, a CUDA index; without CUDA
  the wrapper shards on the CPU instead, which is how the test suite runs FSDP.
* **Gradient clipping and the finite-gradient check** see the global gradient norm: each
  process holds only its shard's gradients, so the guarded optimizer wrapper all-reduces the
  norm (mmengine's plain wrapper would clip every shard by its own norm).
"""

from __future__ import annotations

import math
import re
import time

import mmengine
import torch

# mmengine exports its strategies only from this private package (and the STRATEGIES registry);
# mmengine is pinned (==0.10.7) and tests/test_fsdp.py exercises every override below.
from mmengine._strategy import FSDPStrategy
from mmengine.dist import is_main_process
from mmengine.model import MMFullyShardedDataParallel
from mmengine.runner import FlexibleRunner
from mmengine.runner.checkpoint import load_state_dict, save_checkpoint
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from vision_mtl.engine.checkpoint import register_atomic_backend
from vision_mtl.engine.runner import check_checkpoint_fits
from vision_mtl.registry import FUNCTIONS, MODEL_WRAPPERS, STRATEGIES
from vision_mtl.utils import check_checkpoint_file, read_checkpoint


@MODEL_WRAPPERS.register_module()
class FullyShardedWrapper(MMFullyShardedDataParallel):
    """mmengine's FSDP wrapper that shards on the CPU when there is no CUDA device.

    mmengine's strategy passes ``device_id=int(LOCAL_RANK)``, which FSDP reads as a CUDA index;
    torch's FSDP runs on the CPU (gloo) given ``device_id=torch.device('cpu')``, and its
    ``sync_module_states`` refuses CPU tensors, so rank 0's weights are broadcast here instead.
    With CUDA every argument is passed through unchanged.

    After every training step rank 0's buffers (BatchNorm running statistics) are broadcast,
    as DDP does: FSDP shards parameters only, so each process's running statistics would
    otherwise follow its own batches, validation would use different statistics on every
    process and the checkpoint (rank 0's) would not evaluate as the run validated it.
    """

    def train_step(self, data, optim_wrapper) -> dict:
        """mmengine's FSDP step, then rank 0's buffers on every process."""
        log_vars = super().train_step(data, optim_wrapper)
        _broadcast_from_rank0(self.module, parameters=False)
        return log_vars

    def __init__(self, module: nn.Module, device_id=None, **kwargs) -> None:
        if not torch.cuda.is_available():
            if device_id is not None:
                device_id = torch.device("cpu")
            # FSDP's own sync_module_states needs CUDA tensors; the same broadcast, on the CPU
            if kwargs.pop("sync_module_states", False):
                _broadcast_from_rank0(module)
        super().__init__(module=module, device_id=device_id, **kwargs)


def _broadcast_from_rank0(module: nn.Module, parameters: bool = True) -> None:
    """Give every process rank 0's buffers, and its parameters unless ``parameters`` is
    ``False`` (with them, what ``sync_module_states`` does)."""
    import torch.distributed as dist

    tensors = [*module.parameters(), *module.buffers()] if parameters else list(module.buffers())
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


@FUNCTIONS.register_module()
def block_wrap_policy(
    module: nn.Module, recurse: bool, nonwrapped_numel: int, min_num_params: int = 0
) -> bool:
    """FSDP auto-wrap policy: one unit per backbone block (a module whose class name ends in
    ``Block``: timm's ViT, Swin, ConvNeXt, ResNet, EfficientViT blocks) of at least
    ``min_num_params`` parameters.

    A config names it ``auto_wrap_policy=dict(type='vision_mtl.block_wrap_policy')``. Units per
    block gather one block's parameters at a time (one unit for the whole model would gather
    them all for the forward). Containers are never wrapped: timm reads ``len(self.blocks)``,
    which a size-based policy breaks by wrapping the ``blocks`` sequence itself.
    """
    if recurse:
        return True
    return type(module).__name__.endswith("Block") and nonwrapped_numel >= int(min_num_params)


class _Shapes:
    """A plain model's state-dict shapes, standing in for the model in strict-load checks."""

    def __init__(self, model: nn.Module) -> None:
        self._state = {
            k: torch.empty(tuple(v.shape), device="meta") for k, v in model.state_dict().items()
        }

    def state_dict(self) -> dict:
        return self._state


#: FSDP sharding strategies whose shards are disjoint and rank-ordered over all processes
_SHARDINGS = ("FULL_SHARD", "SHARD_GRAD_OP")
#: the prefixes FSDP and torch's activation checkpointing add to parameter names
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def plain_name(name: str) -> str:
    """A wrapped model's parameter name as the plain model names it."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


@STRATEGIES.register_module()
class VisionMTLFSDPStrategy(FSDPStrategy):
    """mmengine's FSDP strategy with full, atomic, strictly loaded checkpoints (see module doc).

    Args:
        model_wrapper: FSDP wrapper settings (``auto_wrap_policy``, ``sharding_strategy``,
            ``cpu_offload``, ``mixed_precision``, ...); the wrapper type defaults to
            :class:`FullyShardedWrapper` with ``use_orig_params=True`` (which mmengine's
            optimizer constructor needs for per-parameter settings) and
            ``sync_module_states=True`` (rank 0's initial weights on every process, as DDP).
        state_dict_cfg: only ``'full'``: checkpoints are whole models that load anywhere.
        **kwargs: as for mmengine's ``FSDPStrategy`` (``activation_checkpointing``, ...).
    """

    def __init__(self, *, model_wrapper: dict | None = None, state_dict_cfg="full", **kwargs):
        if state_dict_cfg != "full":
            raise ValueError(
                f"strategy.state_dict_cfg={state_dict_cfg!r}: only 'full' is supported, so every "
                "checkpoint loads into the plain model (tools/test.py, export, pruning)"
            )
        wrapper = dict(model_wrapper or {})
        sharding = str(wrapper.get("sharding_strategy") or "FULL_SHARD").rsplit(".", 1)[-1]
        if sharding not in _SHARDINGS:
            raise ValueError(
                f"strategy.model_wrapper.sharding_strategy={sharding!r}: supported are "
                f"{', '.join(_SHARDINGS)} (every process holds its own part of each parameter, "
                "which the checkpoint gather and the global gradient norm rely on)"
            )
        wrapper.setdefault("type", "vision_mtl.FullyShardedWrapper")
        wrapper.setdefault("use_orig_params", True)
        # every process starts from rank 0's weights, whatever each process's random state was
        wrapper.setdefault("sync_module_states", True)
        super().__init__(model_wrapper=wrapper, state_dict_cfg=state_dict_cfg, **kwargs)
        self.strict_load = True
        self.plain_shapes: _Shapes | None = None
        #: the checkpoint the run loads or resumes (set by VisionMTLFlexibleRunner.train)
        self.preload: str | None = None
        self.preloaded: str | None = None
        register_atomic_backend()

    def build_model(self, model: nn.Module | dict) -> nn.Module:
        """Build through :func:`vision_mtl.models.builder.build_model`; refuse models that train
        with a step of their own (slimmable sandwich rule, gradient weightings)."""
        from vision_mtl.models import MultiTaskModel
        from vision_mtl.models.builder import build_model

        if isinstance(model, dict):
            model = build_model(model)
        if not isinstance(model, MultiTaskModel):
            raise ValueError(
                f"strategy FSDP: {type(model).__name__} is not a MultiTaskModel; FSDP trains "
                "multitask models only (MultiMAE pretraining draws pictures from the whole "
                "model on rank 0, which sharding forbids): train it with DDP"
            )
        own_step = getattr(model, "ddp_wrapper", None)
        if own_step:
            raise ValueError(
                f"strategy FSDP: {type(model).__name__} trains with its own step ({own_step}), "
                "which FSDP does not run; train it with DDP (--launcher pytorch without "
                "--strategy fsdp)"
            )
        model = super().build_model(model)
        self.plain_shapes = _Shapes(model)
        return model

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        """Load the run's checkpoint into the plain model, shard it, and log how.

        Weights are loaded before wrapping, as torch's FSDP documentation prescribes for full
        state dicts (mmengine loads them through the wrapper after sharding); the optimizer
        state still loads after, through :meth:`load_optim_state_dict`.
        """
        if self.preload is not None and not isinstance(model, FSDP):
            self._load_plain(model, self.preload)
        total = sum(p.numel() for p in model.parameters())
        wrapped = super()._wrap_model(model)
        if wrapped is None:  # already wrapped
            return wrapped
        units = len(FSDP.fsdp_modules(wrapped))
        local = sum(p.numel() for p in wrapped.parameters())
        self.logger.info(
            f"FSDP: {units} units; rank {self.rank} holds {local} of the model's {total} parameters"
        )
        return wrapped

    def build_optim_wrapper(self, optim_wrapper, model=None):
        """mmengine's sharded optimizer; the guarded wrapper is told its gradients are shards."""
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        if hasattr(wrapper, "sharded_gradients"):
            wrapper.sharded_gradients = True
        return wrapper

    def optim_state_dict(self) -> dict:
        """The optimizer's full state keyed by parameter name (what a plain optimizer's state is
        per parameter), gathered on rank 0; with the loss scaler's state when there is one.

        torch's ``FSDP.optim_state_dict`` (and ``torch.distributed.checkpoint``'s
        ``get_state_dict``) return ``exp_avg_sq`` under both ``exp_avg`` and ``exp_avg_sq`` for
        ``use_orig_params`` models on the CPU (torch 2.14, gloo): a resumed AdamW run then
        trained on corrupted moments. So the state is gathered here from each process's
        shards: FSDP splits the flattened parameters into contiguous chunks in rank order, so
        a parameter's full state is its shards concatenated in rank order.
        """
        optimizer = self.optim_wrapper.optimizer
        names = self._parameter_names()
        local = {
            names[id(p)]: {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in st.items()}
            for p, st in optimizer.state.items()
        }
        shards = _gather_to_rank0(local)
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [names[id(p)] for p in g["params"]],
            }
            for g in optimizer.param_groups
        ]
        state = {}
        if shards is not None:
            shapes = self.plain_shapes.state_dict()
            for group in groups:
                for name in group["params"]:
                    parts = [shard[name] for shard in shards if name in shard]
                    if parts:
                        state[name] = _merge_shards(parts, tuple(shapes[name].shape))
        result = dict(state=state, param_groups=groups)
        scaler = getattr(self.optim_wrapper, "loss_scaler", None)
        if scaler is not None:
            result["loss_scaler"] = scaler.state_dict()
        return result

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """Cut each parameter's full state (:meth:`optim_state_dict`) to this process's shard."""
        import torch.distributed as dist

        optimizer = self.optim_wrapper.optimizer
        names = self._parameter_names()
        saved = state_dict["param_groups"]
        current = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
        saved_names = [g["params"] for g in saved]
        if saved_names != current:
            where = _first_difference(saved_names, current)
            raise ValueError(
                f"the checkpoint's optimizer does not match this run's: {where}. Resume an FSDP "
                "run from an FSDP checkpoint of the same config (parameter names in the same "
                "optimizer groups)"
            )
        numels = {names[id(p)]: p.numel() for g in optimizer.param_groups for p in g["params"]}
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, numels)
        rank = dist.get_rank()
        local_state, index = {}, 0
        for group in optimizer.param_groups:
            for param in group["params"]:
                name = names[id(param)]
                full = state_dict["state"].get(name)
                if full is not None and param.numel():
                    offset = sum(every[r][name] for r in range(rank))
                    local_state[index] = _cut_shard(full, offset, param.numel())
                index += 1
        groups, index = [], 0
        for group in saved:
            count = len(group["params"])
            groups.append({**group, "params": list(range(index, index + count))})
            index += count
        local = dict(state=local_state, param_groups=groups)
        if "loss_scaler" in state_dict:
            local["loss_scaler"] = state_dict["loss_scaler"]
        self.optim_wrapper.load_state_dict(local)

    def _parameter_names(self) -> dict[int, str]:
        """id of each (original) parameter → its name in the plain model."""
        return {id(p): plain_name(n) for n, p in self.model.named_parameters()}

    def _load_plain(self, model: nn.Module, filename: str) -> None:
        """Load ``filename``'s weights into the unwrapped ``model`` (strictly by default)."""
        checkpoint = read_checkpoint(filename)
        state = checkpoint.get("state_dict", checkpoint)
        state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
        if self.strict_load:
            check_checkpoint_fits(model, checkpoint, filename)
            model.load_state_dict(state, strict=True)
        else:  # mmengine's partial load: skips mismatched shapes, logs what it left out
            load_state_dict(model, state, strict=False, logger=self.logger)
        self.logger.info(f"Loaded the weights of {filename} before sharding the model")
        self.preloaded = filename

    def load_model_state_dict(self, state_dict: dict, **kwargs) -> None:
        """Skip the weights :meth:`_wrap_model` already loaded; load any other through FSDP."""
        if self.preloaded is not None:
            self.preloaded = None
            return
        super().load_model_state_dict(state_dict, **kwargs)

    def load_checkpoint(self, filename: str, **kwargs) -> dict:
        """Load a full checkpoint into the shards; strict unless ``strict_load`` is ``False``."""
        strict = kwargs.pop("strict", None)
        strict = self.strict_load if strict is None else strict
        if strict and self.plain_shapes is not None and filename != self.preloaded:
            # (a checkpoint loaded before sharding was checked then)
            revise = kwargs.get("revise_keys") or [(r"^module\.", "")]
            check_checkpoint_fits(
                self.plain_shapes, read_checkpoint(filename, mmap=True), filename, revise
            )
        else:
            check_checkpoint_file(filename)
        return super().load_checkpoint(filename, strict=strict, **kwargs)

    def save_checkpoint(
        self,
        filename: str,
        *,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        extra_ckpt: dict | None = None,
        callback=None,
    ) -> None:
        """Gather the full state on rank 0 (every rank takes part) and write it atomically."""
        checkpoint = dict(state_dict=self.model_state_dict())
        if save_optimizer and hasattr(self, "optim_wrapper"):
            checkpoint["optimizer"] = self.optim_state_dict()
        if save_param_scheduler and hasattr(self, "param_schedulers"):
            checkpoint["param_schedulers"] = self.scheduler_state_dict()
        extra = dict(extra_ckpt or {})
        meta = dict(extra.pop("meta", None) or {})
        meta.update(
            seed=self.seed,
            time=time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            mmengine=mmengine.__version__,
        )
        checkpoint.update(extra, meta=meta)
        if callback is not None:
            callback(checkpoint)
        if is_main_process():
            save_checkpoint(checkpoint, filename, backend_args=dict(backend="atomic_local"))


def _first_difference(saved: list[list], current: list[list]) -> str:
    """Where two optimizers' parameter-name groups first differ, in words."""
    if len(saved) != len(current):
        return f"{len(saved)} parameter groups in the checkpoint, {len(current)} here"
    for index, (a, b) in enumerate(zip(saved, current)):
        if a != b:
            if not all(isinstance(n, str) for n in a):
                return f"group {index} of the checkpoint lists parameter indices (not an FSDP one)"
            for position, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    return f"group {index}, parameter {position}: {x!r} saved, {y!r} here"
            return f"group {index} has {len(a)} parameters saved, {len(b)} here"
    return "the groups differ"


def _gather_to_rank0(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, ``None`` elsewhere."""
    import torch.distributed as dist

    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def _merge_shards(parts: list[dict], shape: tuple[int, ...]) -> dict:
    """One parameter's optimizer state from its shards' (in rank order): per-element tensors
    (flattened shards) concatenated and given the parameter's shape, the rest (``step``) as
    the first shard has it."""
    numel = math.prod(shape)
    merged = {}
    for key, value in parts[0].items():
        if torch.is_tensor(value) and value.dim() == 1:
            full = torch.cat([part[key] for part in parts])
            if full.numel() != numel:
                raise ValueError(
                    f"optimizer state {key!r} of a parameter of shape {shape}: the shards hold "
                    f"{full.numel()} values, expected {numel}"
                )
            merged[key] = full.reshape(shape)
        else:
            merged[key] = value
    return merged


def _cut_shard(full: dict, offset: int, numel: int) -> dict:
    """This process's shard of one parameter's full optimizer state."""
    local = {}
    for key, value in full.items():
        if torch.is_tensor(value) and value.dim() > 0:
            local[key] = value.reshape(-1)[offset : offset + numel].clone()
        else:
            local[key] = value.clone() if torch.is_tensor(value) else value
    return local


class VisionMTLFlexibleRunner(FlexibleRunner):
    """mmengine's FlexibleRunner whose checkpoint loads are strict by default (``strict_load``).

    Built by :func:`vision_mtl.apis.runner.build_train_runner` for ``--strategy fsdp``.
    """

    @property
    def strict_load(self) -> bool:
        return getattr(self.strategy, "strict_load", True)

    @strict_load.setter
    def strict_load(self, value: bool) -> None:
        self.strategy.strict_load = bool(value)

    def train(self) -> nn.Module:
        """mmengine's training, with the checkpoint to load or resume read before sharding."""
        if self._resume or self._load_from:
            self.strategy.preload = self._load_from
        return super().train()

    def load_checkpoint(self, filename: str, map_location="cpu", strict=None, revise_keys=None):
        """Load ``filename`` (strict unless ``strict_load`` is ``False``)."""
        revise_keys = [(r"^module\.", "")] if revise_keys is None else revise_keys

        def callback(checkpoint):
            self.call_hook("after_load_checkpoint", checkpoint=checkpoint)

        return self.strategy.load_checkpoint(
            filename,
            map_location=map_location,
            strict=self.strict_load if strict is None else strict,
            revise_keys=revise_keys,
            callback=callback,
        )
