"""Model size: parameters and multiply-accumulates (MACs), per component.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which sees every
matrix product the model runs, including attention's ``q @ k^T`` and ``attn @ v`` when
``scaled_dot_product_attention`` is forced to its MATH backend (the fused kernels are opaque
to the counter). FlopCounterMode reports FLOPs with one multiply-add = 2 FLOPs; the figures
here are MACs (FLOPs / 2), the unit papers call "FLOPs" when they use hook-based counters such
as thop or fvcore. Those hook counters only see modules (convolutions, linear layers), not
functional matrix products, so for attention models they report fewer MACs than this does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

#: The parts of a :class:`~vision_mtl.models.MultiTaskModel` reported separately.
COMPONENTS = ("backbone", "decoder", "heads")


def count_parameters(model: nn.Module, components: Sequence[str] = COMPONENTS) -> dict[str, int]:
    """Parameters of each named child of ``model`` and in total (``other`` holds the rest)."""
    out: dict[str, int] = {}
    for name in components:
        child = getattr(model, name, None)
        out[name] = sum(p.numel() for p in child.parameters()) if child is not None else 0
    total = sum(p.numel() for p in model.parameters())
    out["other"] = total - sum(out.values())
    out["total"] = total
    return out


def _subtree_flops(counts: dict, prefix: str) -> int:
    """FLOPs recorded under ``prefix``: its own entry, or its outermost called descendants.

    A container that is never called itself (a ``ModuleDict`` of heads) has no entry of its
    own; its called children do, and each of those already includes its descendants.
    """
    keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
    outermost = [k for k in keys if not any(k.startswith(o + ".") for o in keys if o != k)]
    return sum(sum(counts[k].values()) for k in outermost)


def _flop_counts(model: nn.Module, inputs: torch.Tensor, **forward_kwargs) -> dict[str, dict]:
    """FlopCounterMode's FLOPs per module name (``<Model class>.<path>``) and ``Global``."""
    counter = FlopCounterMode(display=False, depth=None)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(inputs, **forward_kwargs)
    return counter.get_flop_counts()


def count_macs(
    model: nn.Module,
    inputs: torch.Tensor,
    components: Sequence[str] = COMPONENTS,
    **forward_kwargs,
) -> dict[str, int]:
    """MACs of one forward pass of ``model(inputs, **forward_kwargs)``, per component and total.

    Args:
        model: the module to run (left in whatever train/eval mode it is in).
        inputs: the input batch; MACs scale with its batch size.
        components: names of ``model``'s children to report separately; whatever runs outside
            them (e.g. the final resize) is ``other``.
        forward_kwargs: passed to the forward call (``mode='tensor'`` for a MultiTaskModel).
    """
    counts = _flop_counts(model, inputs, **forward_kwargs)
    top = type(model).__name__
    total = sum(counts.get("Global", {}).values())
    out: dict[str, int] = {}
    for name in components:
        out[name] = _subtree_flops(counts, f"{top}.{name}") // 2
    out["other"] = total // 2 - sum(out.values())
    out["total"] = total // 2
    return out


#: The layers :func:`layer_macs` reports: those whose channels pruning removes.
LAYER_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def layer_macs(
    model: nn.Module,
    inputs: torch.Tensor,
    layer_types: tuple[type[nn.Module], ...] = LAYER_TYPES,
    **forward_kwargs,
) -> dict[nn.Module, int]:
    """MACs of every ``layer_types`` layer of ``model`` in one forward pass, by the same counter.

    Counted by :func:`count_macs`'s FlopCounterMode, so a layer's figure is part of the
    component totals it reports (a layer called twice counts twice; a transposed convolution
    counts its multiply-adds, input positions × kernel × output channels). Layers that did not
    run are left out.

    Args:
        model: the module to run.
        inputs: the input batch; MACs scale with its batch size.
        layer_types: the layer classes (subclasses included) to report.
        forward_kwargs: passed to the forward call (``mode='tensor'`` for a MultiTaskModel).
    """
    counts = _flop_counts(model, inputs, **forward_kwargs)
    top = type(model).__name__
    out: dict[nn.Module, int] = {}
    for name, module in model.named_modules():
        key = f"{top}.{name}" if name else top
        if isinstance(module, layer_types) and key in counts:
            out[module] = sum(counts[key].values()) // 2
    return out
