"""MultiMAE masking: a fixed budget of visible tokens split across modalities by a Dirichlet draw.

Per sample, MultiMAE shows the encoder exactly ``num_visible`` tokens in total (98 of 588 for three
modalities at 224² with 16² patches). How many of them each modality gets is drawn from a
symmetric Dirichlet(α): α = 1 makes every split equally likely, a small α favours giving almost
everything to one modality, a large α an even split. Within each modality the visible patches are
chosen uniformly at random.

**Exact budget.** The Dirichlet proportions times ``num_visible`` are rounded by the largest
remainder method, so the per-sample total is exactly ``num_visible``. A modality whose share
exceeds its number of patches is capped at that number and the overflow is re-distributed over
the modalities that still have room, in proportion to their drawn shares (uniformly, if those
shares are all zero); this matters for small α, where one modality often draws nearly all of the
budget.

**Subsets** (``sample_subsets=True``): per sample, each modality is kept with probability 1/2
(at least one, redrawn until non-empty); the Dirichlet split runs over the kept modalities only
and the others are fully masked (they are still reconstructed: the model must then predict them
from the others alone). If the kept modalities have fewer than ``num_visible`` patches, the
missing modalities are added back in a random order until the budget fits. With one modality
the option has no effect.

All randomness comes from the ``generator`` argument, so masks are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch


class ModalityMask(NamedTuple):
    """The masking of one modality for a batch.

    Attributes:
        visible: per sample, the sorted indices (row-major patch order) of the visible patches,
            a 1-D int64 tensor each; lengths differ between samples.
        mask: ``B × N`` bool, True = masked (hidden from the encoder, reconstructed and scored).
    """

    visible: list[torch.Tensor]
    mask: torch.Tensor


def split_budget(shares: np.ndarray, budget: int, capacity: np.ndarray) -> np.ndarray:
    """Integer counts summing exactly to ``budget``, close to ``shares × budget``, within capacity.

    Args:
        shares: non-negative proportions per modality (need not sum to 1).
        budget: the total to split; at most ``capacity.sum()``.
        capacity: the most each modality can take.

    Returns:
        int64 counts with ``counts.sum() == budget`` and ``counts <= capacity``.
    """
    capacity = np.asarray(capacity, dtype=np.int64)
    shares = np.where(capacity > 0, np.asarray(shares, dtype=np.float64), 0.0)
    if budget > capacity.sum():
        raise ValueError(f"cannot place {budget} tokens in {int(capacity.sum())} patches")
    counts = np.zeros_like(capacity)
    active = capacity > 0
    remaining = int(budget)
    while remaining > 0:
        weights = np.where(active, shares, 0.0)
        if weights.sum() <= 0:  # every share left is zero: spread the rest evenly
            weights = active.astype(np.float64)
        quota = remaining * weights / weights.sum()
        room = capacity - counts
        full = active & (quota >= room)
        if full.any():  # cap these and re-distribute their overflow over the others
            remaining -= int(room[full].sum())
            counts[full] = capacity[full]
            active &= ~full
            continue
        base = np.floor(quota).astype(np.int64)
        counts += base
        left = remaining - int(base.sum())
        order = np.argsort(-(quota - base), kind="stable")
        order = [i for i in order if active[i]]
        for i in order[:left]:
            counts[i] += 1
        remaining = 0
    return counts


def _keep_subset(rng: np.random.Generator, capacity: np.ndarray, budget: int) -> np.ndarray:
    """A random non-empty subset of modalities (each kept with p=1/2) that can hold ``budget``."""
    num = len(capacity)
    keep = np.zeros(num, dtype=bool)
    while not keep.any():
        keep = rng.random(num) < 0.5
    for i in rng.permutation(num):
        if capacity[keep].sum() >= budget:
            break
        keep[i] = True
    return keep


def dirichlet_masks(
    num_tokens: Mapping[str, int],
    num_visible: int,
    alpha: float,
    generator: torch.Generator,
    batch_size: int,
    sample_subsets: bool = False,
) -> dict[str, ModalityMask]:
    """Draw one batch of MultiMAE masks.

    Args:
        num_tokens: modality → its number of patches N_m.
        num_visible: visible tokens per sample, over all modalities; ``1 ≤ num_visible ≤ Σ N_m``.
        alpha: concentration of the symmetric Dirichlet; > 0.
        generator: the source of all randomness (CPU generator).
        batch_size: number of samples B.
        sample_subsets: give the whole budget to a random subset of modalities per sample (see
            the module docstring).

    Returns:
        modality → :class:`ModalityMask` (on the CPU), in the order of ``num_tokens``.
    """
    names = list(num_tokens)
    capacity = np.array([int(num_tokens[m]) for m in names], dtype=np.int64)
    if not names:
        raise ValueError("num_tokens is empty: configure at least one modality")
    if not 1 <= int(num_visible) <= int(capacity.sum()):
        raise ValueError(
            f"num_visible={num_visible} must be between 1 and the {int(capacity.sum())} tokens "
            f"of all modalities ({dict(zip(names, capacity.tolist()))})"
        )
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    counts = np.zeros((batch_size, len(names)), dtype=np.int64)
    for b in range(batch_size):
        cap = capacity
        if sample_subsets and len(names) > 1:
            cap = np.where(_keep_subset(rng, capacity, int(num_visible)), capacity, 0)
        shares = rng.dirichlet(np.full(len(names), float(alpha)))
        shares = np.nan_to_num(shares, nan=0.0)
        counts[b] = split_budget(shares, int(num_visible), cap)
    out = {}
    for j, name in enumerate(names):
        n = int(capacity[j])
        noise = torch.rand(batch_size, n, generator=generator)
        rank = noise.argsort(dim=1).argsort(dim=1)
        k = torch.from_numpy(counts[:, j])
        mask = rank >= k[:, None]
        visible = [torch.nonzero(~mask[b]).flatten() for b in range(batch_size)]
        out[name] = ModalityMask(visible=visible, mask=mask)
    return out
