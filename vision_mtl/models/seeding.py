"""Random draws a training step makes that must not depend on the global random state.

Data augmentation advances numpy's and torch's global generators differently on every rank and
worker, so a choice that must agree across ranks (the sandwich rule's configurations) or be
reproducible from the iteration alone (MultiMAE's masks) draws from a generator seeded by a base
seed and the iteration number instead.
"""

from __future__ import annotations

import torch
from mmengine.logging import MessageHub

#: mixes the base seed and the iteration into one generator seed (a 64-bit odd constant)
_SEED_MIX = 0x9E3779B97F4A7C15


def iteration_generator(seed: int = 0, iteration: int | None = None) -> torch.Generator:
    """A CPU generator whose draws depend only on ``(seed, iteration)``.

    Args:
        seed: the base seed (e.g. the same on every rank, or mixed with the rank).
        iteration: the iteration number; ``None`` reads ``iter`` from mmengine's current
            ``MessageHub`` (0 when no loop has set it), which the train loop updates
            identically on every rank.
    """
    if iteration is None:
        iteration = int(MessageHub.get_current_instance().get_info("iter", 0))
    mixed = (int(seed) * _SEED_MIX + int(iteration)) % (2**63)
    return torch.Generator().manual_seed(mixed)
