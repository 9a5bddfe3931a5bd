"""Deterministic stand-in weights for a state dict's names and shapes.

Conversion tests need the *same* weights on both sides of a comparison: in the official code,
run outside the repository, and in vision_mtl after conversion. Neither side can rebuild the
other's random initialisation, so both draw from this rule instead: only the key names, the
shapes and a seed decide every value.

The values are chosen to keep activations in a sane range through a randomly weighted network
(fan-in scaled weights, norm scales near 1, positive running variances), so the comparison
exercises every layer rather than saturating them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch


def seeded_tensor(key: str, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """One tensor for ``key``: its kind is read from the name's last part and its rank."""
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=generator)
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=generator)
    if len(shape) <= 1:
        values = torch.randn(shape, generator=generator)
        return 1.0 + 0.1 * values if leaf == "weight" else 0.1 * values
    if leaf in ("pos_embed", "cls_token"):
        return 0.02 * torch.randn(shape, generator=generator)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=generator) / math.sqrt(fan_in)


def seeded_state_dict(shapes: Mapping[str, Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """A state dict with ``shapes``' keys, filled by :func:`seeded_tensor` in sorted key order
    from one generator seeded with ``seed`` (the order of ``shapes`` does not matter)."""
    generator = torch.Generator().manual_seed(int(seed))
    return {key: seeded_tensor(key, shapes[key], generator) for key in sorted(shapes)}
