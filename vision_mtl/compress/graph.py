"""DepGraph construction for multitask models: what Torch-Pruning's tracer gets wrong, put right.

Torch-Pruning couples channels by following autograd. Three patterns in our models defeat it,
and each has a narrow fix here, applied identically when pruning and when a record is replayed:

* **broadcast products** — ``gate[:, i:i+1] * feature`` (TaskExpert's gates, any attention or
  squeeze-excite style scaling) are element-wise ops to DepGraph, which then couples the
  one-channel gate to every channel of the feature. :func:`_cut_broadcasts` removes the edge of
  the operand broadcast along the channel axis: it carries no channels.
* **channel concatenations and splits** downstream of a ViT's 3-D position embedding:
  Torch-Pruning switches off their index mapping (see :func:`_map_channel_concats`).
* **Swin's PatchMerging** interleaves a 2×2 neighbourhood into 4·C channels through a 6-D
  reshape that DepGraph cannot map; :class:`PatchMergingPruner` prunes it as one unit (an input
  channel ``c`` is ``k·C + c`` for the four neighbours ``k``).

Swin's relative position bias tables are indexed by head, not channel; they are kept out of
the channel groups (heads keep their count, only the head width is pruned).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_PRODUCTS = ("MulBackward0", "DivBackward0")


def _channel_axis(ndim: int) -> int | None:
    """DepGraph's channel axis: dim 1 of B×C and B×C×H×W maps, the last of B×N×C tokens."""
    return {2: 1, 4: 1, 3: 2}.get(ndim)


def _broadcast_operands(grad_fn) -> list[int]:
    """Operand positions of a product that are broadcast along the channel axis."""
    shapes = []
    for attr in ("_saved_self", "_saved_other"):
        value = getattr(grad_fn, attr, None)
        shapes.append(tuple(value.shape) if isinstance(value, torch.Tensor) else None)
    if None in shapes or len(shapes[0]) != len(shapes[1]):
        return []
    axis = _channel_axis(len(shapes[0]))
    if axis is None:
        return []
    first, second = shapes
    pairs = ((first, second), (second, first))  # (operand, the other operand) per position
    return [i for i, (own, other) in enumerate(pairs) if own[axis] == 1 < other[axis]]


def _cut_broadcasts(graph) -> bool:
    """Remove DepGraph edges from operands broadcast over channels; True if any was cut."""
    cut = False
    for node in list(graph.module2node.values()):
        fn = node.grad_fn
        if fn is None or not hasattr(fn, "name") or fn.name() not in _PRODUCTS:
            continue
        for position in _broadcast_operands(fn):
            source = fn.next_functions[position][0]
            for operand in [n for n in node.inputs if n.grad_fn is source]:
                node.inputs.remove(operand)
                operand.outputs.remove(node)
                cut = True
    return cut


class _Ranks(TorchFunctionMode):
    """Records the rank of every op's output during DepGraph's tracing forward.

    ``CatBackward0`` and ``SplitBackward0`` keep only their axis, and axis 1 means channels for
    B×C×H×W maps and B×C vectors but tokens for B×N×C sequences; the rank tells which.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ranks: dict = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                self.ranks[tensor.grad_fn] = tensor.ndim
        return out


def scalar_output(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """DepGraph's ``output_transform``: one scalar that every task output reaches."""
    return sum(v.sum() for v in outputs.values())


def tracing_forward() -> tuple[Callable, dict]:
    """A DepGraph ``forward_fn`` running the tensor mode, and the output ranks it records."""
    recorder = _Ranks()

    def forward(model: nn.Module, example: torch.Tensor):
        with recorder:
            return model(example, mode="tensor")

    return forward, recorder.ranks


def _map_channel_concats(graph, ranks: dict) -> None:
    """Re-enable DepGraph's index mapping on concatenations and splits along channels.

    Torch-Pruning disables the mapping on every concat or split downstream of a 3-D parameter
    (a ViT's position embedding or class token, concatenated along tokens); that also switches
    it off for a decoder's concat of feature maps or pooled vectors along channels, and the
    layer after it then loses the wrong channels. Axis 1 of a 2-D or 4-D tensor is channels.
    """
    from torch_pruning import ops
    from torch_pruning.dependency import index_mapping

    update = {
        ops.OPTYPE.CONCAT: index_mapping.update_concat_index_mapping,
        ops.OPTYPE.SPLIT: index_mapping.update_split_index_mapping,
    }
    for node in graph.module2node.values():
        if node.type not in update or node.enable_index_mapping:
            continue
        if ranks.get(node.grad_fn) in (2, 4) and getattr(node.grad_fn, "_saved_dim", None) == 1:
            node.enable_index_mapping = True
            update[node.type](graph, node)


def repair_graph(graph, ranks: dict) -> None:
    """Apply the fixes of this module to a built DependencyGraph (in place).

    Args:
        graph: the DependencyGraph, traced with a :func:`tracing_forward` forward.
        ranks: the output ranks that forward recorded.
    """
    from torch_pruning.dependency import index_mapping, shape_infer

    if _cut_broadcasts(graph):
        for node in graph.module2node.values():
            node.dependencies = []
        graph._build_dependency(graph.module2node)
        shape_infer.init_shape_information(graph)
        index_mapping.update_index_mapping(graph)
    _map_channel_concats(graph, ranks)


def _patch_merging_pruner():
    """A Torch-Pruning pruner for timm's PatchMerging (imported lazily: torch-pruning is optional)."""
    import torch_pruning as tp

    class PatchMergingPruner(tp.pruner.function.BasePruningFunc):
        """Prunes PatchMerging as a unit: input channel ``c`` is ``k·C + c`` for k in 0..3."""

        TARGET_MODULES = None

        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            tp.pruner.function.prune_linear_out_channels(layer.reduction, idxs)
            layer.out_dim = layer.reduction.out_features
            return layer

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            dim = layer.reduction.in_features // 4
            merged = [k * dim + int(i) for k in range(4) for i in idxs]
            tp.pruner.function.prune_layernorm_out_channels(layer.norm, merged)
            tp.pruner.function.prune_linear_in_channels(layer.reduction, merged)
            layer.dim = layer.reduction.in_features // 4
            return layer

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.reduction.out_features

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.reduction.in_features // 4

    return PatchMergingPruner()


def graph_settings(model: nn.Module) -> dict:
    """Keyword arguments for Torch-Pruning (pruner or DependencyGraph) this model needs."""
    pruners, tables = {}, []
    for module in model.modules():
        if type(module).__name__ == "PatchMerging" and hasattr(module, "reduction"):
            pruners.setdefault(type(module), _patch_merging_pruner())
        table = getattr(module, "relative_position_bias_table", None)
        if isinstance(table, nn.Parameter):
            tables.append(table)
    # Bias tables are indexed by head: tracked (so DepGraph knows them) but never pruned.
    return dict(
        customized_pruners=pruners or None,
        unwrapped_parameters=[(t, 1) for t in tables] or None,
        ignored_params=tables,
    )


def build_graph(model: nn.Module, example: torch.Tensor):
    """The repaired DependencyGraph of ``model``'s tensor mode (for replaying a record)."""
    import torch_pruning as tp

    settings = graph_settings(model)
    forward, ranks = tracing_forward()
    graph = tp.DependencyGraph().build_dependency(
        model,
        example,
        forward_fn=forward,
        output_transform=scalar_output,
        customized_pruners=settings["customized_pruners"],
        unwrapped_parameters=settings["unwrapped_parameters"],
        ignored_params=settings["ignored_params"],
    )
    repair_graph(graph, ranks)
    return graph
