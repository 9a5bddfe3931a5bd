"""An optimizer wrapper that refuses a non-finite gradient before the update.

A finite loss can still produce a NaN or infinite gradient (an overflow in a backward pass, a
``sqrt`` at zero, an exploding learning rate). mmengine's OptimWrapper steps anyway: the weights
turn NaN and the next checkpoint is poisoned. :class:`GuardedOptimWrapper` computes the total
gradient norm once per step (one reduced value, one host synchronization — the same norm the
gradient clipping needs, so clipping costs nothing extra), and stops before the update if it is
not finite. The weights, and every checkpoint written so far, stay those of the last good step.
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager

import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from vision_mtl.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class GuardedOptimWrapper(OptimWrapper):
    """mmengine's OptimWrapper with a finite-gradient check before every optimizer step.

    Accepts everything OptimWrapper does (``clip_grad``, ``accumulative_counts``). With
    ``clip_grad=dict(max_norm=...)`` the norm computed for the check is the one used to clip.
    """

    #: set by the FSDP strategy: each process holds a shard of the gradients, so the norm is
    #: all-reduced over the processes (every process then clips and checks the same value)
    sharded_gradients: bool = False

    def _gradients(self) -> list[torch.Tensor]:
        return [
            p
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.requires_grad and p.grad is not None
        ]

    def check_and_clip(self, stop_if_non_finite: bool = True) -> bool:
        """Compute the total gradient norm once, clip as configured; ``False`` if not finite.

        Raises:
            FloatingPointError: a non-finite norm and ``stop_if_non_finite`` (with a loss scaler
                a non-finite norm is an overflow the scaler handles by skipping the step).
        """
        params = self._gradients()
        if not params and not self.sharded_gradients:
            return True
        clip_norm = bool(self.clip_grad_kwargs) and self.grad_name == "grad_norm"
        norm_type = float(self.clip_grad_kwargs.get("norm_type", 2.0)) if clip_norm else 2.0
        if self.sharded_gradients:
            total = _global_norm(params, norm_type)
        else:
            total = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type)
        value = float(total)  # the step's one host synchronization
        if not math.isfinite(value):
            if not stop_if_non_finite:
                return False
            iteration = MessageHub.get_current_instance().get_info("iter", -1) + 1
            raise FloatingPointError(
                f"non-finite gradient (total norm {value}) at iteration {iteration} although "
                "every loss was finite; training stopped before the update, so the weights "
                "and every checkpoint written so far are those of the last good iteration. "
                "Lower the learning rate or the loss weights, or check the inputs."
            )
        if clip_norm:
            max_norm = self.clip_grad_kwargs["max_norm"]
            if params:
                torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
            self.message_hub.update_scalar("train/grad_norm", value)
        elif self.clip_grad_kwargs:
            if self.sharded_gradients:
                raise ValueError(
                    "optim_wrapper.clip_grad by value is not supported under FSDP; clip by "
                    "norm (clip_grad=dict(max_norm=...)) instead"
                )
            self._clip_grad()
        return True

    def step(self, **kwargs) -> None:
        """Check the gradients, clip them as configured, then step the optimizer."""
        self.check_and_clip()
        self.optimizer.step(**kwargs)


def _global_norm(params: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    """The norm of the gradients of every process's shard together (one all-reduce)."""
    import torch.distributed as dist

    grads = [p.grad for p in params]
    distributed = dist.is_available() and dist.is_initialized()
    # the collective's device: NCCL reduces CUDA tensors only (offloaded gradients are on the
    # CPU, and a process without a gradient shard has none), gloo CPU ones
    if distributed and torch.cuda.is_available() and dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = grads[0].device if grads and not distributed else torch.device("cpu")
    local = (
        torch.nn.utils.get_total_norm(grads, norm_type).float().to(device)
        if grads
        else torch.zeros((), device=device)
    )
    if not distributed:
        return local
    if norm_type == math.inf:
        dist.all_reduce(local, op=dist.ReduceOp.MAX)
        return local
    power = local.pow(norm_type)
    dist.all_reduce(power)
    return power.pow(1.0 / norm_type)


#: the normalization layers :func:`fp32_norms` keeps in fp32
NORM_LAYERS = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
)


def _upcast(module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def fp32_norms(model: torch.nn.Module) -> int:
    """Make every normalization layer of ``model`` compute in fp32, also under autocast.

    CUDA's autocast runs ``layer_norm`` and ``group_norm`` in fp32 and cuDNN's BatchNorm keeps
    fp32 statistics; the CPU's bf16 autocast leaves them to the input's dtype, so batch
    statistics and normalized activations were rounded to bf16's 8-bit mantissa — the
    quickstart trained with it lost 1–3 points of Δm against fp32. A forward pre-hook casts each
    layer's input to fp32 (a no-op outside autocast); the next convolution or matrix product
    autocasts back to the low precision. Returns the number of layers hooked.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, NORM_LAYERS) and not getattr(module, "_fp32_norm", False):
            module.register_forward_pre_hook(_upcast)
            module._fp32_norm = True
            count += 1
    return count


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(GuardedOptimWrapper):
    """:class:`GuardedOptimWrapper` whose forward passes run under ``torch.autocast``.

    mmengine's AmpOptimWrapper refuses to start without a GPU; bf16 autocast needs no loss
    scaler (bf16 has fp32's exponent range), so on the CPU this wrapper is mixed precision:
    parameters, gradients and the optimizer stay fp32, matrix products run in ``dtype``.
    ``loss_scale`` adds torch's GradScaler on the parameters' device (fp16): losses are scaled
    before backward, gradients unscaled before the check and the clipping, and a step whose
    gradients overflowed is skipped while the scale backs off.

    Args:
        dtype: the autocast dtype, ``'bfloat16'`` or ``'float16'``.
        loss_scale: ``None`` (no scaler), ``'dynamic'``, a fixed scale, or a dict of
            ``torch.amp.GradScaler`` arguments (``init_scale``, ``growth_interval``, ...).
        fp32_norms: run BatchNorm, LayerNorm and GroupNorm layers in fp32 under autocast
            (:func:`fp32_norms`); ``False`` leaves them to autocast's own policy.
        **kwargs: as for :class:`GuardedOptimWrapper`.
    """

    def __init__(
        self, dtype: str = "bfloat16", loss_scale=None, fp32_norms: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.fp32_norms = bool(fp32_norms)
        self._hooked: weakref.WeakSet = weakref.WeakSet()
        if dtype not in ("bfloat16", "float16"):
            raise ValueError(f"optim_wrapper.dtype must be 'bfloat16' or 'float16', got {dtype!r}")
        self.cast_dtype = getattr(torch, dtype)
        self.loss_scaler = None
        self.fixed_scale: float | None = None
        if loss_scale is None:
            return
        device = self.optimizer.param_groups[0]["params"][0].device.type
        if loss_scale == "dynamic":
            self.loss_scaler = torch.amp.GradScaler(device)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = torch.amp.GradScaler(device, **loss_scale)
        elif isinstance(loss_scale, (int, float)) and loss_scale > 0:
            # a fixed scale (mmengine's meaning): reset after every step, an overflow skips it
            self.fixed_scale = float(loss_scale)
            self.loss_scaler = torch.amp.GradScaler(device, init_scale=self.fixed_scale)
        else:
            raise ValueError(
                "optim_wrapper.loss_scale must be None, 'dynamic', a positive number or a dict "
                f"of GradScaler arguments, got {loss_scale!r}"
            )

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        """mmengine's context (``no_sync`` while accumulating), plus autocast on the model's
        device, with the model's normalization layers kept in fp32 (:func:`fp32_norms`)."""
        if self.fp32_norms and model not in self._hooked:
            fp32_norms(model)  # once per model (and per layer: a wrapper and its module agree)
            self._hooked.add(model)
        param = next(model.parameters(), None)
        device = "cpu" if param is None else param.device.type
        with super().optim_context(model), torch.autocast(device, dtype=self.cast_dtype):
            yield

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Backpropagate ``loss``, scaled by the loss scaler when there is one."""
        super().backward(
            loss if self.loss_scaler is None else self.loss_scaler.scale(loss), **kwargs
        )

    def step(self, **kwargs) -> None:
        """Unscale, check and clip, then step through the scaler (which skips an overflow)."""
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        self.loss_scaler.unscale_(self.optimizer)
        self.check_and_clip(stop_if_non_finite=False)
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self.fixed_scale)

    def state_dict(self) -> dict:
        """The optimizer's state, with the loss scaler's when there is one."""
        state = super().state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` (the scaler's scale included)."""
        state_dict = dict(state_dict)
        scaler = state_dict.pop("loss_scaler", None)
        if scaler is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler)
        super().load_state_dict(state_dict)
