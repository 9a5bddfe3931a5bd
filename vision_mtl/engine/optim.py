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

    def _gradients(self) -> list[torch.Tensor]:
        return [
            p
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.requires_grad and p.grad is not None
        ]

    def step(self, **kwargs) -> None:
        """Check the gradients, clip them as configured, then step the optimizer."""
        params = self._gradients()
        if params:
            clip_norm = bool(self.clip_grad_kwargs) and self.grad_name == "grad_norm"
            norm_type = float(self.clip_grad_kwargs.get("norm_type", 2.0)) if clip_norm else 2.0
            total = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type)
            value = float(total)  # the step's one host synchronization
            if not math.isfinite(value):
                iteration = MessageHub.get_current_instance().get_info("iter", -1) + 1
                raise FloatingPointError(
                    f"non-finite gradient (total norm {value}) at iteration {iteration} although "
                    "every loss was finite; training stopped before the update, so the weights "
                    "and every checkpoint written so far are those of the last good iteration. "
                    "Lower the learning rate or the loss weights, or check the inputs."
                )
            if clip_norm:
                max_norm = self.clip_grad_kwargs["max_norm"]
                torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
                self.message_hub.update_scalar("train/grad_norm", value)
            elif self.clip_grad_kwargs:
                self._clip_grad()
        self.optimizer.step(**kwargs)


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(GuardedOptimWrapper):
    """:class:`GuardedOptimWrapper` whose forward passes run under ``torch.autocast``.

    mmengine's AmpOptimWrapper refuses to start without a GPU; bf16 autocast needs no loss
    scaler (bf16 has fp32's exponent range), so on the CPU this wrapper is mixed precision:
    parameters, gradients and the optimizer stay fp32, matrix products run in ``dtype``.

    Args:
        dtype: the autocast dtype (``'bfloat16'``; ``'float16'`` only where the device's autocast
            supports it, and then without a scaler).
        **kwargs: as for :class:`GuardedOptimWrapper`.
    """

    def __init__(self, dtype: str = "bfloat16", **kwargs) -> None:
        super().__init__(**kwargs)
        if dtype not in ("bfloat16", "float16"):
            raise ValueError(f"optim_wrapper.dtype must be 'bfloat16' or 'float16', got {dtype!r}")
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        """mmengine's context (``no_sync`` while accumulating), plus autocast on the model's
        device."""
        param = next(model.parameters(), None)
        device = "cpu" if param is None else param.device.type
        with super().optim_context(model), torch.autocast(device, dtype=self.cast_dtype):
            yield
