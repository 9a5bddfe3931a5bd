"""Gradient-based strategies with state of their own: GradNorm and DB-MTL.

Neither is a TorchJD rule. GradNorm learns its weights from the task gradients' norms (the
diagonal of their Gramian); DB-MTL keeps a running average of the task gradients themselves.
Both states are checkpointed: GradNorm's as a parameter and a buffer, DB-MTL's through
``get_extra_state`` (its size is the shared parameters', known only at the first step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vision_mtl.losses.weighting.gradient import GradientWeighting
from vision_mtl.registry import WEIGHTINGS

_EPS = 1e-8


@WEIGHTINGS.register_module()
class GradNorm(GradientWeighting):
    """GradNorm (Chen et al., ICML 2018): weights that equalize the tasks' weighted gradient norms,
    tilted toward the tasks that train slowest.

    Weights ``w = T·softmax(θ)`` (LibMTL's parameterization). Each step, ``θ`` receives the
    gradient of ``Σ_t |w_t‖g_t‖ − mean(w‖g‖)·r_t^α|`` (the target detached), with
    ``r_t = (L_t/L_t(0)) / mean(L/L(0))`` the relative inverse training rate and ``L(0)`` the
    first step's losses; the model's optimizer steps ``θ`` with the rest. The task gradients and
    the decoder's and heads' gradients are weighted by ``w``.

    Args:
        tasks: the model's task names.
        alpha: the asymmetry ``α`` (the paper's NYUv2 setting: 1.5).
        target: ``'parameters'`` or ``'representation'`` (see :class:`GradientWeighting`).
    """

    def __init__(
        self, tasks: Sequence[str], alpha: float = 1.5, target: str = "parameters", seed: int = 0
    ) -> None:
        super().__init__(tasks, target, seed)
        self.alpha = float(alpha)
        self.logits = nn.Parameter(torch.zeros(self.num_tasks))
        self.register_buffer("initial_losses", torch.zeros(self.num_tasks))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def current(self) -> torch.Tensor:
        """The weights ``T·softmax(θ)``."""
        return self.num_tasks * torch.softmax(self.logits, dim=0)

    def weights(self, gramian, global_losses, step, jacobian=None) -> torch.Tensor:
        if not bool(self.started):
            self.initial_losses.copy_(global_losses.detach().clamp_min(_EPS))
            self.started.fill_(True)
        return self.current().detach().to(gramian.dtype)

    def extra_objective(self, gramian: torch.Tensor, global_losses: torch.Tensor):
        norms = gramian.diagonal().clamp_min(0).sqrt().detach().to(self.logits)
        weighted = self.current() * norms
        ratios = global_losses.detach().to(self.logits) / self.initial_losses
        ratios = ratios / ratios.mean()
        target = (weighted.mean() * ratios**self.alpha).detach()
        return (weighted - target).abs().sum()

    def specific_weights(self, weights: torch.Tensor) -> torch.Tensor:
        return weights


@WEIGHTINGS.register_module()
class DBMTL(GradientWeighting):
    """Dual-balancing MTL (Lin et al., 2023).

    Loss scales are balanced by taking the gradients of ``log L_t`` (``∇L_t / L_t``, with the
    global loss as the divisor, exact under DDP); gradient magnitudes by a running average
    ``ĝ_t ← g_t + β_k·(ĝ_t − g_t)``, ``β_k = β / k^σ``, each rescaled to the largest average's
    norm before summing. The decoder and heads receive ``Σ_t ∇ log L_t``.

    Only ``target='parameters'``: an average of representation gradients would mix different
    images (LibMTL refuses it as well).

    Args:
        tasks: the model's task names.
        beta: ``β`` (0.9).
        beta_sigma: ``σ`` (0.5).
    """

    gradient_copies = 2

    def __init__(
        self,
        tasks: Sequence[str],
        beta: float = 0.9,
        beta_sigma: float = 0.5,
        target: str = "parameters",
        seed: int = 0,
    ) -> None:
        super().__init__(tasks, target, seed)
        if target != "parameters":
            raise ValueError(
                "DBMTL averages task gradients over steps, which needs target='parameters' "
                f"(representation gradients belong to different images at every step); got "
                f"target={target!r}"
            )
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.steps = 0
        self.average: torch.Tensor | None = None

    def objectives(self, losses: torch.Tensor, global_losses: torch.Tensor) -> torch.Tensor:
        return losses / (global_losses.detach().to(losses) + _EPS)

    def weights(self, gramian, global_losses, step, jacobian=None) -> torch.Tensor:
        if jacobian is None:
            raise ValueError("DBMTL needs the task gradients (target='parameters')")
        self.steps += 1
        if self.average is None or self.average.shape != jacobian.shape:
            self.average = torch.zeros_like(jacobian)
        self.average = self.average.to(jacobian)
        factor = self.beta / self.steps**self.beta_sigma
        self.average = jacobian + factor * (self.average - jacobian)
        norms = self.average.norm(dim=1)
        return (norms.max() / (norms + _EPS)).to(gramian.dtype)

    def combine_rows(self, jacobian: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return weights.to(jacobian) @ self.average

    def get_extra_state(self) -> dict:
        """The step count and the running average of the task gradients (checkpointed)."""
        average = None if self.average is None else self.average.detach().cpu()
        return {"steps": self.steps, "average": average}

    def set_extra_state(self, state: dict) -> None:
        """Restore :meth:`get_extra_state`'s dict (an average of another size restarts)."""
        if not isinstance(state, dict) or set(state) != {"steps", "average"}:
            raise ValueError(
                f"DBMTL state must be a dict with 'steps' and 'average', got {type(state)}"
            )
        self.steps = int(state["steps"])
        self.average = state["average"]
