"""Structural channel pruning of a whole multitask model with Torch-Pruning (DepGraph).

DepGraph traces the model once and groups every layer whose channels are coupled (a conv's
outputs, the norm after it, the next layers' inputs, residual partners), so removing a channel
removes it everywhere at once. This module adds what a multitask model needs on top:

* **protection**: the layers that write task outputs are never pruned, nor the layers a decoder
  declares :attr:`~vision_mtl.models.decoders.base.MultiTaskDecoder.unprunable` (gates, joint
  attention), nor modules matched by the config's ``pruning.protected`` patterns (for example
  EfficientViT's linear-attention ``context_module``: its reshapes into heads are not traced);
* **attention heads**: timm ``Attention`` (ViT) and ``WindowAttention`` (Swin) blocks are pruned
  by head dimension (and, with ``head_ratio``, ViT heads whole), with ``num_heads``,
  ``head_dim`` and ``attn_dim`` kept consistent;
  :mod:`vision_mtl.compress.graph` prunes Swin's PatchMerging and repairs what DepGraph traces
  wrongly (broadcast gates, channel concats after a ViT's position embedding);
* **task-aware importance**: ``task-taylor`` scores channels by each task's Taylor importance,
  normalized per task, and keeps the largest, so a channel vital to one task survives;
* **a restorable record**: the DepGraph pruning history (module names and channel indices) and
  the resulting attributes, plain JSON-like data saved in the checkpoint's ``meta``; the pruned
  architecture is rebuilt from config + record (:func:`apply_record`), never unpickled.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from vision_mtl.compress.graph import (
    build_graph,
    graph_settings,
    repair_graph,
    scalar_output,
    tracing_forward,
)

RECORD_FORMAT = "vision_mtl.pruning/1"
IMPORTANCES = ("magnitude", "taylor", "task-taylor")


class PruningError(ValueError):
    """Pruning or fine-tuning settings, protected layers or records that cannot be used."""


def output_layers(model: nn.Module) -> list[str]:
    """Names of the layers that write a task output (each head's ``predict``)."""
    return [
        name
        for name, _ in model.named_modules()
        if name.startswith("heads.") and name.endswith(".predict")
    ]


def protected_layers(model: nn.Module, patterns: Iterable[str] = ()) -> list[str]:
    """Prunable layers (convs, linears) never pruned.

    These are the task outputs, the decoder's :attr:`unprunable` layers and those matching
    ``patterns`` (fnmatch over module names, from the config's ``pruning.protected``).
    """
    patterns = list(patterns)
    decoder = getattr(model, "decoder", None)
    patterns += [f"decoder.{p}" for p in getattr(decoder, "unprunable", ())]
    names = set(output_layers(model))
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and any(
            fnmatch.fnmatchcase(name, p) for p in patterns
        ):
            names.add(name)
    return sorted(names)


def check_ratio(ratio: float) -> float:
    if not 0.0 < float(ratio) < 1.0:
        raise PruningError(f"pruning ratio must be in (0, 1), got {ratio}")
    return float(ratio)


def check_ratio_dict(model: nn.Module, ratios: dict[str, float], protected: Sequence[str]) -> None:
    """Every named layer exists, is not protected, and has a ratio in (0, 1)."""
    modules = dict(model.named_modules())
    for name, ratio in ratios.items():
        if name not in modules:
            raise PruningError(f"layer {name!r} in the ratio settings is not in the model")
        if name in protected:
            raise PruningError(
                f"layer {name!r} is protected (a task output or in the config's "
                "pruning.protected list) and cannot be pruned"
            )
        check_ratio(ratio)


def _attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """timm attention blocks: their qkv layer and head count (DepGraph prunes per head dim)."""
    heads = {}
    for module in model.modules():
        qkv = getattr(module, "qkv", None)
        if isinstance(qkv, nn.Linear) and isinstance(getattr(module, "num_heads", None), int):
            heads[qkv] = module.num_heads
    return heads


def check_head_pruning(model: nn.Module) -> None:
    """Whole heads can go: the model has timm attention, none indexed by head (Swin's tables).

    Raises:
        PruningError: no attention block with heads to remove, or a relative position bias
            table indexed by head (a Swin window attention).
    """
    if not _attention_heads(model):
        raise PruningError(
            "a head ratio removes whole attention heads, but the model has no timm attention "
            "block (a qkv linear layer and num_heads) to remove them from"
        )
    for name, module in model.named_modules():
        if getattr(module, "qkv", None) is not None and hasattr(
            module, "relative_position_bias_table"
        ):
            raise PruningError(
                f"{name} has a relative position bias table indexed by head: its heads cannot "
                "be removed whole (prune its head width with the channel ratio instead)"
            )


def _sync_attention(model: nn.Module) -> dict[str, dict[str, int]]:
    """After pruning: each attention's widths from its layers; returns the attributes.

    ``head_dim`` (and timm's ``attn_dim``) follow the qkv width, ``dim`` (Swin) the input
    width. The softmax ``scale`` is left as trained: the remaining channels carry most of each
    dot product, and rescaling to the narrower head would sharpen every attention map.
    """
    attributes = {}
    for name, module in model.named_modules():
        qkv = getattr(module, "qkv", None)
        if isinstance(qkv, nn.Linear) and isinstance(getattr(module, "num_heads", None), int):
            head_dim = qkv.out_features // (3 * module.num_heads)
            module.head_dim = head_dim
            attributes[name] = {"num_heads": module.num_heads, "head_dim": head_dim}
            if hasattr(module, "attn_dim"):  # timm reshapes the heads' output to attn_dim
                module.attn_dim = module.num_heads * head_dim
                attributes[name]["attn_dim"] = module.attn_dim
            if isinstance(getattr(module, "dim", None), int):
                module.dim = qkv.in_features
                attributes[name]["dim"] = module.dim
    return attributes


class TaskTaylorImportance:
    """Taylor importance per task, each normalized by its mean, combined by the maximum.

    ``gradients[task][parameter]`` holds each task's loss gradient (see :func:`task_gradients`).
    A channel's score is its largest normalized per-task score, so a channel that one task
    relies on keeps a high score even if the other tasks do not use it.
    """

    def __init__(self, gradients: dict[str, dict[nn.Parameter, torch.Tensor]]) -> None:
        import torch_pruning as tp

        self.gradients = gradients
        self.taylor = tp.importance.GroupTaylorImportance()

    def __call__(self, group) -> torch.Tensor:
        scores = []
        params = {p for task in self.gradients.values() for p in task}
        saved = {p: p.grad for p in params}
        try:
            for grads in self.gradients.values():
                for p in params:
                    p.grad = grads.get(p, torch.zeros_like(p))
                score = self.taylor(group)
                scores.append(score / score.mean().clamp_min(1e-12))
        finally:
            for p, grad in saved.items():
                p.grad = grad
        return torch.stack(scores).amax(0)


def task_gradients(
    model: nn.Module, batches: Sequence[dict], tasks: Sequence[str]
) -> dict[str, dict[nn.Parameter, torch.Tensor]]:
    """Each task's loss gradient (summed over ``batches``) for every parameter."""
    gradients: dict[str, dict[nn.Parameter, torch.Tensor]] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    for task in tasks:
        model.zero_grad()
        for batch in batches:
            losses = model(**model.data_preprocessor(batch, True), mode="loss")
            loss = losses[f"loss_{task}"]
            loss.backward()
        gradients[task] = {p: p.grad.detach().clone() for p in params if p.grad is not None}
    model.zero_grad()
    return gradients


def _total_loss(model: nn.Module, batches: Sequence[dict]) -> None:
    model.zero_grad()
    for batch in batches:
        losses = model(**model.data_preprocessor(batch, True), mode="loss")
        sum(v for k, v in losses.items() if k.startswith("loss")).backward()


_UNTRACEABLE = (
    "DepGraph could not prune this model ({}: {}); its channel coupling is not traced correctly "
    "(reshapes into heads, stacked experts). Protect those modules with the config's "
    "pruning.protected patterns."
)


def prune(
    model: nn.Module,
    example: torch.Tensor,
    ratio: float,
    importance: str = "magnitude",
    global_pruning: bool = False,
    iterative_steps: int = 1,
    protected: Sequence[str] = (),
    batches: Sequence[dict] = (),
    on_step: Callable[[int], None] | None = None,
    layer_ratios: dict[str, float] | None = None,
    round_to: int | None = 16,
    head_ratio: float = 0.0,
) -> dict:
    """Prune ``model`` in place to ``ratio`` of its channels removed; returns the record.

    Args:
        model: a :class:`~vision_mtl.models.MultiTaskModel`.
        example: an input batch (B×3×H×W) for tracing.
        ratio: channel ratio removed from each prunable group (or globally).
        importance: ``magnitude`` (L2 of weights), ``taylor`` (|w·∂L/∂w| of the summed task
            losses) or ``task-taylor`` (:class:`TaskTaylorImportance`).
        global_pruning: rank channels across layers instead of within each.
        iterative_steps: reach ``ratio`` in this many steps, re-scoring in between.
        protected: patterns of layers never pruned (task outputs always are).
        batches: training batches (``data_preprocessor`` input) for the Taylor scores.
        on_step: called after each step with its index (e.g. to fine-tune in between).
        layer_ratios: layer name → ratio for the groups those layers lead, overriding ``ratio``.
        round_to: keep channel counts multiples of this (16: ONNX Runtime's AVX-512 blocked
            convolutions need multiples of 16 to run at full speed; ``None`` for exact ratios).
        head_ratio: share of each ViT attention's heads removed whole (by their mean channel
            importance), on top of the narrower heads ``ratio`` gives; 0 keeps every head.

    Raises:
        PruningError: a ratio outside (0, 1), an unknown importance, Taylor importance
            without batches, or head pruning of a model without timm attention or of attention
            with per-head parameters (Swin).
    """
    import torch_pruning as tp

    ratio = check_ratio(ratio)
    if importance not in IMPORTANCES:
        raise PruningError(f"importance {importance!r} is not one of {IMPORTANCES}")
    if importance != "magnitude" and not batches:
        raise PruningError(f"{importance} importance needs training batches for its gradients")
    if iterative_steps < 1:
        raise PruningError(f"iterative_steps must be positive, got {iterative_steps}")
    if head_ratio:
        check_ratio(head_ratio)
        check_head_pruning(model)
    names = protected_layers(model, protected)
    check_ratio_dict(model, layer_ratios or {}, names)
    pruner = make_pruner(
        model,
        example,
        ratio,
        names,
        global_pruning,
        iterative_steps,
        layer_ratios,
        round_to,
        head_ratio,
    )
    for step in range(iterative_steps):
        if importance == "taylor":
            _total_loss(model, batches)
            pruner.importance = tp.importance.GroupTaylorImportance()
        elif importance == "task-taylor":
            pruner.importance = TaskTaylorImportance(task_gradients(model, batches, model.tasks))
        try:
            pruner.step()
        except (IndexError, RuntimeError, ValueError) as err:
            raise PruningError(_UNTRACEABLE.format(type(err).__name__, err)) from None
        model.zero_grad()
        for module in model.modules():  # head pruning changes the head counts
            if getattr(module, "qkv", None) in pruner.num_heads:
                module.num_heads = int(pruner.num_heads[module.qkv])
        _sync_attention(model)
        if on_step is not None:
            on_step(step)
    check_runs(model, example)
    return make_record(
        model,
        pruner,
        example,
        ratio,
        importance,
        global_pruning,
        names,
        round_to,
        head_ratio=head_ratio,
    )


def make_pruner(
    model: nn.Module,
    example: torch.Tensor,
    ratio: float,
    protected: Sequence[str],
    global_pruning: bool = False,
    iterative_steps: int = 1,
    layer_ratios: dict[str, float] | None = None,
    round_to: int | None = 16,
    head_ratio: float = 0.0,
):
    """A Torch-Pruning MetaPruner over the whole model, on the repaired graph (magnitude scores).

    Args:
        protected: names of layers whose output channels stay (see :func:`protected_layers`).
        Others: as for :func:`prune`.
    """
    import torch_pruning as tp

    modules = dict(model.named_modules())
    settings = graph_settings(model)
    forward, ranks = tracing_forward()
    model.eval()
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            tp.importance.GroupMagnitudeImportance(p=2),
            forward_fn=forward,
            global_pruning=global_pruning,
            pruning_ratio=ratio,
            pruning_ratio_dict={modules[n]: r for n, r in (layer_ratios or {}).items()} or None,
            iterative_steps=iterative_steps,
            round_to=round_to,
            ignored_layers=[modules[n] for n in protected] + settings["ignored_params"],
            customized_pruners=settings["customized_pruners"],
            unwrapped_parameters=settings["unwrapped_parameters"],
            num_heads=_attention_heads(model),
            prune_head_dims=True,
            prune_num_heads=head_ratio > 0,
            head_pruning_ratio=head_ratio,
            output_transform=scalar_output,
        )
    except (IndexError, RuntimeError, ValueError) as err:
        raise PruningError(_UNTRACEABLE.format(type(err).__name__, err)) from None
    repair_graph(pruner.DG, ranks)
    model.eval()
    return pruner


def check_runs(model: nn.Module, example: torch.Tensor) -> None:
    """The pruned model still runs (a module computing shapes from its old width would not)."""
    try:
        with torch.no_grad():
            model(example, mode="tensor")
    except (IndexError, RuntimeError, ValueError) as err:
        raise PruningError(
            f"the pruned model no longer runs ({err}); a module computes shapes from its "
            "unpruned width. Protect it with the config's pruning.protected patterns."
        ) from None


def _weight_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Every conv's and linear's weight shape: what a record must rebuild exactly."""
    return {
        name: [int(s) for s in module.weight.shape]
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def make_record(
    model, pruner, example, ratio, importance, global_pruning, protected, round_to, **extra
) -> dict:
    """The pruning record saved in a checkpoint's ``meta['pruning']`` (plain data only)."""
    import torch_pruning as tp

    history = [
        [name, bool(out), [int(i) for i in idxs]] for name, out, idxs in pruner.DG.pruning_history()
    ]
    return dict(
        format=RECORD_FORMAT,
        history=history,
        attention=_sync_attention(model),
        weight_shapes=_weight_shapes(model),
        input_shape=[int(s) for s in example.shape],
        ratio=ratio,
        importance=importance,
        global_pruning=bool(global_pruning),
        protected=list(protected),
        round_to=round_to,
        versions=dict(torch=str(torch.__version__), torch_pruning=str(tp.__version__)),
        **extra,
    )


def apply_record(model: nn.Module, record: dict) -> nn.Module:
    """Rebuild the pruned architecture on a freshly built ``model`` (before loading weights).

    Raises:
        PruningError: the record is not a pruning record or does not fit the model (another
            config, or a model it was not made from).
    """

    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise PruningError(f"not a pruning record of format {RECORD_FORMAT!r}")
    modules = dict(model.named_modules())
    missing = sorted({name for name, _, _ in record["history"] if name not in modules})
    if missing:
        raise PruningError(f"the pruning record names layers the model lacks: {missing[:5]}")
    model.eval()
    graph = build_graph(model, torch.zeros(record["input_shape"]))
    try:
        graph.load_pruning_history([tuple(h) for h in record["history"]])
    except (IndexError, RuntimeError) as err:
        raise PruningError(f"the pruning record does not fit this model: {err}") from None
    for name, attributes in record.get("attention", {}).items():
        if name in modules:  # head pruning: the count is the record's
            modules[name].num_heads = int(attributes["num_heads"])
    shapes = _weight_shapes(model)
    wrong = [n for n, s in record["weight_shapes"].items() if shapes.get(n) != s]
    if _sync_attention(model) != record.get("attention", {}):
        wrong.append("attention heads")
    if wrong:
        raise PruningError(f"rebuilt layers differ from the record: {wrong[:5]}")
    return model
