"""Gradient-based strategies: the task gradients, combined by a rule from TorchJD.

The training step (:mod:`vision_mtl.models.weighted_step`) computes one gradient per task on the
shared part of the model — the backbone's parameters (``target='parameters'``), or, cheaper, the
backbone's output, the decoder's input (``target='representation'``) — and hands the strategy
their Gramian ``G = J·Jᵀ`` (T×T, already reduced over the DDP ranks). The strategy returns one
weight per task; the shared update is ``Σ_t w_t·g_t``. Every other parameter (decoder, heads)
receives the plain sum of the task gradients, as in LibMTL.

The rules are TorchJD's public :class:`torchjd.aggregation.Weighting` classes, which read a
Gramian: vision_mtl writes the integration, not the algebra. Two conventions come with them:
PCGrad returns the *sum* of the projected gradients (the paper's Algorithm 1), and CAGrad returns
``g₀ + c·‖g₀‖/‖g_w‖·g_w`` without the official code's optional ``1/(1+c²)`` rescaling.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from vision_mtl.losses.weighting.base import Weighting, step_seed
from vision_mtl.registry import WEIGHTINGS

_TARGETS = ("parameters", "representation")


def gramian_factor(gramian: torch.Tensor) -> torch.Tensor:
    """A T×T matrix ``M`` with ``M·Mᵀ = gramian`` (for rules that take a matrix but depend on it
    only through its Gramian, such as TorchJD's Nash-MTL)."""
    values, vectors = torch.linalg.eigh(gramian.double())
    return (vectors * values.clamp_min(0).sqrt()).to(gramian.dtype)


def cosine_similarities(gramian: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the task gradients, from their Gramian."""
    norms = gramian.diagonal().clamp_min(1e-30).sqrt()
    return gramian / (norms[:, None] * norms[None, :])


class GradientWeighting(Weighting):
    """Base class of the strategies that combine task gradients.

    Args:
        tasks: the model's task names.
        target: ``'parameters'`` (the backbone's parameters; one backward pass per task through
            the whole model, ``T × backbone parameters`` floats of extra memory) or
            ``'representation'`` (the backbone's output features: the per-task passes stop at
            the decoder input, then one pass through the backbone; ``T × feature size`` floats).
        seed: base seed of any random choice of the rule (PCGrad's projection order), mixed with
            the iteration, so the choice is reproducible and does not touch the global random
            state.
    """

    uses_gradients = True
    #: copies of the task gradients the strategy holds (DB-MTL also keeps their running average)
    gradient_copies: int = 1

    def __init__(self, tasks: Sequence[str], target: str = "parameters", seed: int = 0) -> None:
        super().__init__(tasks)
        if target not in _TARGETS:
            raise ValueError(
                f"{type(self).__name__}: target must be one of {_TARGETS}, got {target!r}"
            )
        self.target = target
        self.seed = int(seed)
        self.last_cosines = torch.eye(self.num_tasks)

    def objectives(self, losses: torch.Tensor, global_losses: torch.Tensor) -> torch.Tensor:
        """The per-task quantities whose gradients are combined (the losses themselves)."""
        return losses

    def weights(
        self,
        gramian: torch.Tensor,
        global_losses: torch.Tensor,
        step: int,
        jacobian: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One weight per task from the Gramian of the task gradients.

        ``jacobian`` (T×n, the reduced task gradients) is given with ``target='parameters'``.
        """
        raise NotImplementedError

    def extra_objective(self, gramian: torch.Tensor, global_losses: torch.Tensor):
        """A scalar to backpropagate into the strategy's own parameters (GradNorm), or None."""
        return None

    def combine_rows(self, jacobian: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The shared update from the task gradients (rows of ``jacobian``) and the weights."""
        return weights.to(jacobian) @ jacobian

    def specific_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """Factors on each task's gradient for the parameters outside the shared part (1)."""
        return torch.ones_like(weights)

    def observe(self, gramian: torch.Tensor, weights: torch.Tensor) -> None:
        """Keep what the training log shows: weights and cosine similarities."""
        self.last_weights = weights.detach().float().cpu()
        self.last_cosines = cosine_similarities(gramian.detach().float()).cpu()

    def log_vars(self) -> dict[str, float]:
        logs = super().log_vars()
        cos = self.last_cosines
        for i, a in enumerate(self.tasks):
            for j in range(i + 1, self.num_tasks):
                logs[f"cos/{a}-{self.tasks[j]}"] = float(cos[i, j])
        return logs

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, target={self.target!r}"


class TorchJDWeighting(GradientWeighting):
    """A rule of :mod:`torchjd.aggregation` applied to the Gramian of the task gradients."""

    def build_rule(self):
        """The TorchJD object computing the weights (subclasses)."""
        raise NotImplementedError

    def __init__(self, tasks: Sequence[str], target: str = "parameters", seed: int = 0) -> None:
        super().__init__(tasks, target, seed)
        self.rule = self.build_rule()

    def apply_rule(self, gramian: torch.Tensor) -> torch.Tensor:
        """The rule's weights for ``gramian`` (TorchJD's Weighting on a Gramian)."""
        return self.rule(gramian)

    def weights(
        self,
        gramian: torch.Tensor,
        global_losses: torch.Tensor,
        step: int,
        jacobian: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # TorchJD's PCGrad draws its projection order from the global CPU generator: fork it
        # and seed it from the iteration, so the order is reproducible and augmentation is
        # unaffected (torch.manual_seed would reseed the CUDA generators too, unrestored).
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.default_generator.manual_seed(step_seed(self.seed, step))
            # cvxpy's "problem is not DPP" note on every Nash-MTL / CAGrad solve
            warnings.filterwarnings("ignore", category=UserWarning, module="cvxpy")
            warnings.filterwarnings("ignore", message=".*not DPP.*")
            weights = self.apply_rule(gramian.double())
        return weights.to(gramian.dtype)


def _torchjd(name: str):
    from torchjd import aggregation

    return getattr(aggregation, name)


@WEIGHTINGS.register_module()
class PCGrad(TorchJDWeighting):
    """Gradient surgery (Yu et al., NeurIPS 2020): each task gradient is projected onto the
    normal plane of every task gradient it conflicts with (random order), and the projections
    are summed."""

    def build_rule(self):
        return _torchjd("PCGradWeighting")()


@WEIGHTINGS.register_module()
class CAGrad(TorchJDWeighting):
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021): the update maximizing the
    worst task's improvement within a ball of radius ``c·‖g₀‖`` around the average gradient.

    Args:
        c: the ball's radius factor (the official NYUv2 setting: 0.4).
    """

    def __init__(
        self, tasks: Sequence[str], c: float = 0.4, target: str = "parameters", seed: int = 0
    ) -> None:
        self.c = float(c)
        super().__init__(tasks, target, seed)

    def build_rule(self):
        return _torchjd("CAGradWeighting")(c=self.c)


@WEIGHTINGS.register_module()
class IMTLG(TorchJDWeighting):
    """Impartial MTL, gradient part (Liu et al., ICLR 2021): weights summing to 1 whose combined
    gradient has the same projection on every task's unit gradient."""

    def build_rule(self):
        return _torchjd("IMTLGWeighting")()


@WEIGHTINGS.register_module()
class MGDA(TorchJDWeighting):
    """Multiple-gradient descent (Désidéri 2012; Sener & Koltun, NeurIPS 2018): the minimum-norm
    point of the convex hull of the task gradients (Frank–Wolfe, TorchJD's defaults)."""

    def build_rule(self):
        return _torchjd("MGDAWeighting")()


@WEIGHTINGS.register_module()
class UPGrad(TorchJDWeighting):
    """Unconflicting projection of gradients (Quinton & Rey, 2024): the average of each task
    gradient projected onto the dual cone of all of them."""

    def build_rule(self):
        return _torchjd("UPGradWeighting")()


@WEIGHTINGS.register_module()
class AlignedMTL(TorchJDWeighting):
    """Aligned-MTL (Senushkin et al., CVPR 2023): the task gradients made orthogonal and equally
    scaled (condition number 1) before summing.

    Args:
        scale_mode: the rescaling of the aligned gradients (``'min'``, ``'median'``, ``'rmse'``).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        scale_mode: str = "min",
        target: str = "parameters",
        seed: int = 0,
    ) -> None:
        if scale_mode not in ("min", "median", "rmse"):
            raise ValueError(
                f"AlignedMTL: scale_mode must be 'min', 'median' or 'rmse', got {scale_mode!r}"
            )
        self.scale_mode = scale_mode
        super().__init__(tasks, target, seed)

    def build_rule(self):
        return _torchjd("AlignedMTLWeighting")(scale_mode=self.scale_mode)


@WEIGHTINGS.register_module()
class NashMTL(TorchJDWeighting):
    """Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution among the tasks.

    TorchJD offers it as an aggregator of a matrix whose weights depend on the matrix only
    through its Gramian; it is given a T×T factor of the Gramian, so representation gradients of
    a DDP run need no gathering. Its solver's warm start is not checkpointed: a resumed run
    restarts the solver from its default point.

    Args:
        max_norm: the official code's clipping of the combined gradient's norm (0: off).
        update_weights_every: recompute the weights every this many steps.
        optim_niter: iterations of the inner solver.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        target: str = "parameters",
        seed: int = 0,
    ) -> None:
        self.options = dict(
            max_norm=float(max_norm),
            update_weights_every=int(update_weights_every),
            optim_niter=int(optim_niter),
        )
        super().__init__(tasks, target, seed)

    def build_rule(self):
        return _torchjd("NashMTL")(n_tasks=len(self.tasks), **self.options)

    def apply_rule(self, gramian: torch.Tensor) -> torch.Tensor:
        return self.rule.weighting(gramian_factor(gramian))
