"""PAGCP-style greedy pruning: each layer as far as every task's validation loss allows.

PAGCP (performance-aware global channel pruning for multitask models) prunes layer by layer
and stops a layer's ratio when a task's loss degrades past a threshold. Here:

1. Every prunable channel group (one DepGraph group: a layer's outputs and everything coupled
   to them) is scored by the multiply-accumulates it would save at ``max_ratio``.
2. Groups are visited in decreasing order of that saving. Each gets a share of the global
   ``budget`` in proportion to its saving (the layers that buy most compute may cost most).
3. A group's ratio rises in ``step`` increments, channels ranked within the group by weight
   magnitude or by task-aware Taylor importance (``rank``), on a copy of the model, until some
   task's validation loss exceeds its loss before this group by more than the group's share;
   the last ratio that held is applied for real.

So after all groups, each task's loss has risen by at most about ``budget`` (relative), and
the compute removed is wherever the tasks could spare it. The result is an ordinary pruning
record (:func:`~vision_mtl.compress.pruning.apply_record` rebuilds it) with the ratio chosen
for each group.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Sequence

import torch
from torch import nn

from vision_mtl.complexity import layer_macs as count_layer_macs
from vision_mtl.compress.pruning import (
    PruningError,
    TaskTaylorImportance,
    _sync_attention,
    check_ratio,
    check_runs,
    make_pruner,
    make_record,
    protected_layers,
    task_gradients,
)

GREEDY_RANKS = ("magnitude", "task-taylor")


def task_losses(model: nn.Module, batches: Sequence[dict]) -> dict[str, float]:
    """Each task's loss (``loss_<task>``) summed over ``batches``, in eval mode."""
    model.eval()
    totals = {task: 0.0 for task in model.tasks}
    with torch.no_grad():
        for batch in batches:
            losses = model(**model.data_preprocessor(batch, False), mode="loss")
            for task in totals:
                totals[task] += float(losses[f"loss_{task}"])
    return totals


def layer_macs(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, float]:
    """Multiply-accumulates of every conv and linear layer for ``example`` (per image).

    Counted by :func:`vision_mtl.complexity.layer_macs`, the FlopCounterMode counter that
    ``get_flops`` and the pruning report use, so a group's saving is in the same MACs.
    """
    images = example.shape[0]
    return {
        layer: macs / images
        for layer, macs in count_layer_macs(model, example, mode="tensor").items()
    }


def _group_key(group, names: dict) -> frozenset[str]:
    """The layers whose outputs a group prunes: the same across copies of the model."""
    graph = group._DG
    return frozenset(
        names[dep.target.module]
        for dep, _ in group
        if dep.target.module in names and graph.is_out_channel_pruning_fn(dep.handler)
    )


def _saved_macs(group, macs: dict[nn.Module, float]) -> float:
    """MACs a group's pruning removes: each layer's MACs times its pruned fraction."""
    graph = group._DG
    fractions: dict[nn.Module, float] = {}
    for dep, idxs in group:
        layer = dep.target.module
        if layer not in macs:
            continue
        out = graph.is_out_channel_pruning_fn(dep.handler)
        size = graph.get_out_channels(layer) if out else graph.get_in_channels(layer)
        if size:
            fractions[layer] = max(fractions.get(layer, 0.0), len(idxs) / size)
    return sum(macs[layer] * fraction for layer, fraction in fractions.items())


def _prune_group(model: nn.Module, pruner, key: frozenset[str], ratio: float) -> bool:
    """Prune only the group ``key`` of ``model`` at ``ratio``; False if it has nothing to prune."""
    names = {m: n for n, m in model.named_modules()}
    pruner.per_step_pruning_ratio = [0.0, ratio]
    pruner.current_step = 0
    try:
        for group in pruner.step(interactive=True):
            if _group_key(group, names) == key:
                group.prune()
                _sync_attention(model)  # narrower heads: timm reshapes by head_dim
                return True
        return False
    finally:
        pruner.current_step = 0


def _trial(model: nn.Module, pruner, key, ratio: float, batches) -> dict[str, float] | None:
    """Task losses after pruning group ``key`` at ``ratio`` on a copy (None: nothing pruned)."""
    # Shared, not copied: autograd nodes and Python modules (neither can be copied) and the
    # stateless layer pruners, whose methods Torch-Pruning's importances compare by identity.
    # The copied graph refers to the copied layers.
    graph = pruner.DG
    shared = [n.grad_fn for n in graph.module2node.values()]
    shared += [v for v in vars(graph).values() if isinstance(v, types.ModuleType)]
    shared += [*graph.REGISTERED_PRUNERS.values(), *graph.CUSTOMIZED_PRUNERS.values()]
    memo = {id(obj): obj for obj in shared if obj is not None}
    model_copy, pruner_copy = copy.deepcopy((model, pruner), memo)
    if not _prune_group(model_copy, pruner_copy, key, ratio):
        return None
    return task_losses(model_copy, batches)


def greedy_prune(
    model: nn.Module,
    example: torch.Tensor,
    max_ratio: float,
    batches: Sequence[dict],
    budget: float = 0.1,
    step: float = 0.1,
    protected: Sequence[str] = (),
    round_to: int | None = 16,
    rank: str = "magnitude",
    grad_batches: Sequence[dict] = (),
    log: Callable[[str], None] | None = None,
) -> dict:
    """Prune ``model`` in place, group by group, within a loss budget; returns the record.

    Args:
        model: a :class:`~vision_mtl.models.MultiTaskModel`.
        example: an input batch (B×3×H×W) for tracing and MAC counts.
        max_ratio: the largest channel ratio any group may lose.
        batches: validation batches (``data_preprocessor`` input) the losses are measured on.
        budget: the relative rise of each task's validation loss allowed over the whole model.
        step: ratio increment of the search.
        protected: patterns of layers never pruned (task outputs always are).
        round_to: keep channel counts multiples of this (``None``: exact ratios).
        rank: how channels are ranked within a group: ``magnitude`` or ``task-taylor``
            (:class:`~vision_mtl.compress.pruning.TaskTaylorImportance` on ``grad_batches``,
            recomputed after every group that was pruned).
        grad_batches: training batches for ``task-taylor`` ranking.
        log: called with one line per group.

    Raises:
        PruningError: a ratio, budget or step out of range, or no validation batches.
    """
    max_ratio = check_ratio(max_ratio)
    if not batches:
        raise PruningError("greedy pruning needs validation batches for the task losses")
    if not budget > 0:
        raise PruningError(f"greedy budget must be positive, got {budget}")
    if not 0 < step <= max_ratio:
        raise PruningError(f"greedy step must be in (0, ratio={max_ratio}], got {step}")
    if rank not in GREEDY_RANKS:
        raise PruningError(f"greedy rank {rank!r} is not one of {GREEDY_RANKS}")
    if rank == "task-taylor" and not grad_batches:
        raise PruningError("task-taylor ranking needs training batches for its gradients")
    names = protected_layers(model, protected)
    pruner = make_pruner(model, example, max_ratio, names, round_to=round_to)
    module_names = {m: n for n, m in model.named_modules()}
    macs = layer_macs(model, example)
    # Enumerate the groups at the largest ratio and what each would save there.
    pruner.current_step = 0
    savings = {}
    labels = {}
    for group in pruner.step(interactive=True):
        key = _group_key(group, module_names)
        savings[key] = _saved_macs(group, macs)
        layers = [n for n in key if isinstance(model.get_submodule(n), (nn.Conv2d, nn.Linear))]
        labels[key] = min(layers or key)
    pruner.current_step = 0
    total = sum(savings.values())
    if not total:
        raise PruningError("no prunable channel group saves any computation")
    ratios = [round(step * i, 6) for i in range(1, int(max_ratio / step + 1e-6) + 1)]
    current = task_losses(model, batches)
    chosen: dict[str, float] = {}
    stale = True  # the ranking's gradients must be taken on the current (pruned) weights
    for key, saved in sorted(savings.items(), key=lambda kv: -kv[1]):
        share = budget * saved / total
        if rank == "task-taylor" and stale:
            pruner.importance = TaskTaylorImportance(
                task_gradients(model, grad_batches, model.tasks)
            )
            model.zero_grad()
            stale = False
        best = None
        for ratio in ratios:
            losses = _trial(model, pruner, key, ratio, batches)
            if losses is None:
                continue
            rises = {t: losses[t] / max(current[t], 1e-12) - 1 for t in current}
            if max(rises.values()) > share:
                break
            best = (ratio, losses)
        label = labels[key]
        if best is not None:
            _prune_group(model, pruner, key, best[0])
            current = best[1]
            chosen[label] = best[0]
            stale = True
        if log is not None:
            picked = f"{best[0]:.2f}" if best else "0"
            log(f"greedy: {label} (+{len(key) - 1} coupled) ratio {picked} (share {share:.4f})")
    check_runs(model, example)
    return make_record(
        model,
        pruner,
        example,
        max_ratio,
        "greedy",
        False,
        names,
        round_to,
        greedy=dict(budget=budget, step=step, rank=rank, ratios=chosen),
    )
