"""Loss-based strategies: the weights come from the loss values alone (one backward pass).

Written here rather than taken from TorchJD's scalarizers because their state (DWA's epoch
averages, FAMO's Adam moments) lives in private attributes outside ``state_dict``, so a resumed
run could not continue it; here every piece of state is a buffer and travels in checkpoints.

Strategies that divide by a loss value (log-sum, FAMO) divide by the *global* value (averaged over
the DDP ranks, detached): the gradient is then exactly that of ``log L`` on the global batch, so
a DDP run equals a single process on the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vision_mtl.losses.weighting.base import LossWeighting, step_seed
from vision_mtl.registry import WEIGHTINGS

_EPS = 1e-8


@WEIGHTINGS.register_module()
class Uncertainty(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Objective ``Σ_t ½·exp(−s_t)·L_t + ½·s_t`` with one learned log variance ``s_t`` per task
    (LibMTL's and TorchJD's form). Its minimum over ``s_t`` is at ``s_t = log L_t``: a task whose
    loss stays large gets a small weight ``½·exp(−s_t)``.

    Args:
        tasks: the model's task names.
        init: initial log variance (0: every weight ½; LibMTL uses −0.5).
    """

    def __init__(self, tasks: Sequence[str], init: float = 0.0) -> None:
        super().__init__(tasks)
        self.log_var = nn.Parameter(torch.full((self.num_tasks,), float(init)))

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        self._check(losses)
        weights = 0.5 * torch.exp(-self.log_var)
        self.last_weights = weights.detach().cpu()
        return (weights * losses + 0.5 * self.log_var).sum()

    def log_vars(self) -> dict[str, float]:
        logs = super().log_vars()
        for task, value in zip(self.tasks, self.log_var.detach().cpu().tolist()):
            logs[f"log_var/{task}"] = value
        return logs


@WEIGHTINGS.register_module()
class DWA(LossWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

    ``λ_t = T·softmax_t(r_t / temperature)`` with ``r_t = L̄_t(k−1) / L̄_t(k−2)``, the ratio of the
    task's average loss over the last two windows. The paper's windows are epochs; training here
    is counted in iterations, so a window is ``interval`` iterations. Weights are 1 until two
    windows are complete.

    Args:
        tasks: the model's task names.
        temperature: the paper's ``T`` (2).
        interval: iterations per averaging window.
    """

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0, interval: int = 50) -> None:
        super().__init__(tasks)
        if temperature <= 0 or interval < 1:
            raise ValueError(
                f"DWA needs temperature > 0 and interval >= 1, got temperature={temperature}, "
                f"interval={interval}"
            )
        self.temperature = float(temperature)
        self.interval = int(interval)
        self.register_buffer("window_sum", torch.zeros(self.num_tasks))
        self.register_buffer("window_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("averages", torch.zeros(2, self.num_tasks))
        self.register_buffer("num_averages", torch.zeros((), dtype=torch.long))

    def weights(self) -> torch.Tensor:
        """The weights the next step uses (from the two completed windows)."""
        if int(self.num_averages) < 2:
            return torch.ones(self.num_tasks, device=self.averages.device)
        rates = self.averages[1] / self.averages[0].clamp_min(_EPS)
        return self.num_tasks * torch.softmax(rates / self.temperature, dim=0)

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        self._check(losses)
        weights = self.weights().to(losses)
        self.last_weights = weights.detach().cpu()
        with torch.no_grad():
            self.window_sum += global_losses.to(self.window_sum)
            self.window_count += 1
            if int(self.window_count) == self.interval:
                self.averages.copy_(
                    torch.stack([self.averages[1], self.window_sum / self.interval])
                )
                self.num_averages.add_(1)
                self.window_sum.zero_()
                self.window_count.zero_()
        return (weights * losses).sum()


@WEIGHTINGS.register_module()
class RLW(LossWeighting):
    """Random Loss Weighting (Lin et al., TMLR 2022): ``λ = softmax(z)``, ``z ~ N(0, I)`` each
    step.

    The draw comes from a generator seeded by ``seed`` and the iteration, never from the global
    random state, so every DDP rank draws the same weights and a resumed run continues the same
    sequence.
    """

    def __init__(self, tasks: Sequence[str], seed: int = 0) -> None:
        super().__init__(tasks)
        self.seed = int(seed)

    def weights(self, step: int) -> torch.Tensor:
        """The weights of iteration ``step``."""
        generator = torch.Generator().manual_seed(step_seed(self.seed, step))
        return torch.softmax(torch.randn(self.num_tasks, generator=generator), dim=0)

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        self._check(losses)
        weights = self.weights(step).to(losses)
        self.last_weights = weights.detach().cpu()
        return (weights * losses).sum()


@WEIGHTINGS.register_module()
class LogSum(LossWeighting):
    """``Σ_t log L_t`` (MTMamba's objective; the geometric loss strategy up to a factor).

    Its gradient ``Σ_t ∇L_t / L_t`` divides each task's gradient by its loss, so every task's
    relative decrease counts equally. Backpropagated as ``Σ_t L_t / L̄_t`` with ``L̄_t`` the
    detached global loss: the same gradient, exact under DDP.
    """

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        self._check(losses)
        weights = 1.0 / (global_losses.to(losses) + _EPS)
        self.last_weights = weights.detach().cpu()
        return (weights * losses).sum()


@WEIGHTINGS.register_module()
class FAMO(LossWeighting):
    """Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).

    The update follows ``c·Σ_t z_t·log(L_t − b_t + ε)`` with ``z = softmax(w)`` and
    ``c = (Σ_t z_t / (L_t − b_t + ε))⁻¹`` (a constant in the backward pass). After the optimizer
    step, the losses are recomputed on the same batch by the updated model and the logits ``w``
    take one Adam step along ``∂z/∂w · δ`` with ``δ_t = log(L_t^before − b_t + ε) −
    log(L_t^after − b_t + ε)``, the official implementation's rule: one more forward pass per
    step, no gradient. The logits and their Adam moments are buffers (checkpointed).

    Args:
        tasks: the model's task names.
        lr: learning rate of the logits' Adam (the paper's 0.025).
        weight_decay: L2 penalty on the logits (the paper's Algorithm 2: 1e-3).
        min_losses: per-task lower bounds ``b`` (default 0; every loss must stay above it).
    """

    needs_losses_after_update = True

    def __init__(
        self,
        tasks: Sequence[str],
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        min_losses: Sequence[float] | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        super().__init__(tasks)
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"FAMO needs lr >= 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        self.lr, self.weight_decay, self.betas = float(lr), float(weight_decay), tuple(betas)
        bounds = torch.zeros(self.num_tasks) if min_losses is None else torch.tensor(min_losses)
        self._check(bounds.float(), "min_losses")
        self.register_buffer("min_losses", bounds.float())
        self.register_buffer("logits", torch.zeros(self.num_tasks))
        self.register_buffer("exp_avg", torch.zeros(self.num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(self.num_tasks))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("losses_before", torch.zeros(self.num_tasks))

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        self._check(losses)
        shifted = (global_losses - self.min_losses + _EPS).to(losses)
        z = torch.softmax(self.logits, dim=0).to(losses)
        c = 1.0 / (z / shifted).sum()
        weights = c * z / shifted  # ∂/∂L_t of c·Σ z·log(L − b + ε) at the global losses
        self.last_weights = weights.detach().cpu()
        self.losses_before.copy_(global_losses.detach())
        return (weights.detach() * losses).sum()

    @torch.no_grad()
    def after_update(self, global_losses: torch.Tensor) -> None:
        """One Adam step of the logits from the losses' change across the update."""
        self._check(global_losses)
        before = torch.log(self.losses_before - self.min_losses + _EPS)
        after = torch.log(global_losses.to(before) - self.min_losses + _EPS)
        delta = before - after
        z = torch.softmax(self.logits, dim=0)
        grad = z * (delta - (z * delta).sum()) + self.weight_decay * self.logits
        beta1, beta2 = self.betas
        self.adam_steps += 1
        t = int(self.adam_steps)
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq / (1 - beta2**t)).sqrt() + _EPS
        self.logits -= self.lr / (1 - beta1**t) * self.exp_avg / denom

    def log_vars(self) -> dict[str, float]:
        logs = super().log_vars()
        z = torch.softmax(self.logits, dim=0).cpu().tolist()
        logs.update({f"famo_z/{t}": v for t, v in zip(self.tasks, z)})
        return logs
