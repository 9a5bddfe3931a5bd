"""The weighting extension point: how per-task losses become one update.

A :class:`Weighting` sits between the per-task losses and the optimizer step
(``MultiTaskModel(weighting=dict(type=...))``). It is a submodule of the model, so its learnable
parameters (uncertainty's log variances) are optimized with the model and its state (DWA's loss
history, FAMO's logits and their Adam moments, DB-MTL's gradient averages) is saved in every
checkpoint and restored on resume.

Two families:

* **loss-based** (:class:`LossWeighting`): the strategy turns the per-task losses into one scalar
  objective; one backward pass, like fixed weights.
* **gradient-based** (:class:`~.gradient.GradientWeighting`): the strategy sees the task
  gradients on the shared parameters (or on the shared representation, the decoder input) and
  returns one weight per task; the update is the weighted sum of those gradients. One backward
  pass per task.

Every strategy reads loss values through ``global_losses``: the batch's per-task losses averaged
over the DDP ranks (what a single process would see on the global batch), so the state and the
weights are the same on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from vision_mtl.registry import WEIGHTINGS


def world_size() -> int:
    """Ranks in the default process group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the DDP ranks (unchanged in a single process)."""
    if world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world_size()


def step_seed(seed: int, step: int) -> int:
    """The seed of a strategy's random draw at iteration ``step``: a function of the base seed
    and the iteration only, so every rank draws the same and a resumed run continues the
    sequence (the global generator, which augmentation advances per rank, is never used)."""
    return int(seed) * 1_000_003 + int(step)


def same_on_every_rank(values: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``values`` on every rank, so a choice made by a solver or a random draw cannot
    differ between ranks by rounding or by the global random state."""
    if world_size() > 1:
        dist.broadcast(values, src=0)
    return values


class Weighting(nn.Module):
    """Base class of every strategy.

    Args:
        tasks: the model's task names, in the model's order (the order of every per-task tensor
            the strategy sees).
    """

    #: ``True`` for strategies that need the task gradients (see :mod:`.gradient`)
    uses_gradients: bool = False

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError(f"{type(self).__name__} needs at least one task, got {tasks!r}")
        #: the weights of the last step, one per task (what the training log shows)
        self.last_weights = torch.ones(len(self.tasks))

    @property
    def num_tasks(self) -> int:
        """How many tasks the strategy balances."""
        return len(self.tasks)

    @property
    def is_fixed(self) -> bool:
        """``True`` for :class:`Fixed`, whose step is mmengine's own."""
        return False

    def _check(self, values: torch.Tensor, what: str = "losses") -> None:
        if values.shape != (self.num_tasks,):
            raise ValueError(
                f"{type(self).__name__} expects {what} of shape ({self.num_tasks},) for tasks "
                f"{list(self.tasks)}, got {tuple(values.shape)}"
            )

    def log_vars(self) -> dict[str, float]:
        """Per-task weights of the last step, keyed ``weight/<task>``."""
        return {f"weight/{t}": float(w) for t, w in zip(self.tasks, self.last_weights.tolist())}

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}"


class LossWeighting(Weighting):
    """A strategy that combines the loss values (one backward pass)."""

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        """The scalar objective to backpropagate.

        Args:
            losses: this rank's per-task losses (with their graph).
            global_losses: the same, detached and averaged over ranks.
            step: the iteration (0-based), the same on every rank.
        """
        raise NotImplementedError

    def after_update(self, global_losses: torch.Tensor) -> None:
        """Called after the optimizer step with the batch's losses recomputed by the updated
        model, for strategies whose ``needs_losses_after_update`` is ``True`` (FAMO)."""

    #: ``True`` when the step must recompute the losses after the update (one more forward pass)
    needs_losses_after_update: bool = False


@WEIGHTINGS.register_module()
class Fixed(LossWeighting):
    """The sum of the per-task losses (each already scaled by its task's ``loss_weight``).

    The default. The model then trains with mmengine's own step, exactly as without a weighting
    component; the weights shown are the ``loss_weight`` values, which the model applies.
    """

    @property
    def is_fixed(self) -> bool:
        return True

    def combine(self, losses: torch.Tensor, global_losses: torch.Tensor, step: int) -> torch.Tensor:
        self._check(losses)
        return losses.sum()

    def log_vars(self) -> dict[str, float]:
        return {}
