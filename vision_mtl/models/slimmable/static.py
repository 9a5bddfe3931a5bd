"""Deploy one width configuration of a slimmable model as a plain, static network.

A slimmable model slices its parameters at run time (``weight[:k_out, :k_in]``). To deploy one
configuration, nothing new is needed: keeping the first k channels of every layer *is* a
structural pruning, so it is written as a pruning record
(:mod:`vision_mtl.compress.pruning`) — the DepGraph history of the channels the configuration
drops, the attention head counts and the resulting weight shapes. Everything that understands
pruned models then works on the deployed configuration unchanged: ``build_model`` (and so
``init_model``, ``tools/test.py`` and ``tools/export.py``) rebuilds its architecture from
config + record, and its checkpoints carry the record.

::

    record = width_record(cfg, config, example)   # cfg: the model config
    static = static_model(slim, config, cfg, example)  # plain nn.Module, record attached
    # static(x, mode="tensor") == slim(x, mode="tensor") at config

Channels are removed with explicit indices (``get_pruning_group(..., idxs=...)``) on the same
repaired DependencyGraph :func:`~vision_mtl.compress.pruning.apply_record` replays, so coupled
layers (residual partners, norms, the decoder's level concatenation) lose the same channels.
ViT attention keeps its first heads (the *fewer heads* rule of
:mod:`~vision_mtl.models.slimmable.convert`): ``qkv`` loses the other heads' rows in each of its
q, k and v blocks, ``proj`` their columns, and ``num_heads`` is recorded.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import SimpleNamespace

import torch
from torch import nn

from vision_mtl.models.slimmable.decoders import check_configuration
from vision_mtl.models.slimmable.layers import SlimLinear, SlimmableLayer, SwitchableBatchNorm2d
from vision_mtl.models.slimmable.model import configuration


def _is_slimmable(model: nn.Module) -> bool:
    return any(isinstance(m, SlimmableLayer) for m in model.modules())


def _plain_model(source: Mapping | nn.Module) -> nn.Module:
    """A fresh unconverted model from a config, or a copy of an unconverted model."""
    if isinstance(source, nn.Module):
        if _is_slimmable(source):
            raise ValueError("width_record needs the model config or an unconverted model")
        if getattr(source, "pruning_record", None) is not None:
            raise ValueError("the model is already pruned: give its unpruned config instead")
        model = copy.deepcopy(source)
    else:
        from vision_mtl.models.builder import build_model

        cfg = dict(source)
        if cfg.get("pruning") is not None:
            raise ValueError("the model config already holds a pruning record")
        cfg.pop("pruning", None)
        model = build_model(cfg)
    return model.eval()


def _targets(slim: nn.Module, config: Mapping[str, float]) -> dict[str, tuple[int, int]]:
    """Layer name → (output channels kept, heads kept or 0) of ``slim`` at ``config``."""
    targets = {}
    with configuration(slim, config):
        for name, module in slim.named_modules():
            if not isinstance(module, SlimmableLayer) or not isinstance(
                module, nn.Conv2d | nn.Linear
            ):
                continue
            k_out = module.active_channels[1]
            heads = 0
            if isinstance(module, SlimLinear) and module.out_groups > 1:
                heads = int(slim.get_submodule(name.rsplit(".", 1)[0]).num_heads)
            targets[name] = (k_out, heads)
    return targets


def _out_channels(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _prune_to(graph, module: nn.Module, keep: int, heads: int) -> None:
    """Remove the output channels past the first ``keep`` (per q/k/v block if ``heads``)."""
    import torch_pruning as tp

    current = _out_channels(module)
    if heads:  # qkv: ``keep`` rows of each of the three blocks
        block = current // 3
        idxs = [b * block + i for b in range(3) for i in range(keep, block)]
    else:
        idxs = list(range(keep, current))
    if not idxs:
        return
    fn = (
        tp.prune_conv_out_channels
        if isinstance(module, nn.Conv2d)
        else tp.prune_linear_out_channels
    )
    graph.get_pruning_group(module, fn, idxs=idxs).prune()


def width_record(
    source: Mapping | nn.Module, config: Mapping[str, float], example: torch.Tensor
) -> dict:
    """The pruning record that keeps, in the unconverted model, the channels of ``config``.

    The widths come from converting a copy of the model with
    :func:`~vision_mtl.models.slimmable.make_model_slimmable` (offering the configuration's
    widths), so the channels kept are exactly the slimmable layers' ``channels_at`` counts.

    Args:
        source: the model config (as given to ``build_model``, without a ``pruning`` record) or
            an unconverted model of the same architecture (copied, left unchanged).
        config: slot → width, as for ``set_configuration``; missing slots stay at full width.
        example: an input batch (B×3×H×W) for tracing; its shape is stored in the record.

    Returns:
        A record :func:`~vision_mtl.compress.pruning.apply_record` replays (plain data), with
        the complete configuration under ``"configuration"``.

    Raises:
        ValueError: ``source`` is slimmable or already pruned, an unknown slot, or layers
            DepGraph couples that the slimmable model slices to different widths.
        TypeError: a backbone, decoder or head type that is not slimmable.
    """
    from vision_mtl.compress.graph import build_graph
    from vision_mtl.compress.pruning import _sync_attention, check_runs, make_record
    from vision_mtl.models.slimmable.model import make_model_slimmable

    model = _plain_model(source)
    widths = sorted({float(w) for w in config.values()} | {1.0})
    slim = make_model_slimmable(copy.deepcopy(model), widths)
    full = check_configuration(slim.decoder, config)
    targets = _targets(slim, full)
    modules = dict(model.named_modules())
    graph = build_graph(model, example)
    for name, (keep, heads) in targets.items():
        _prune_to(graph, modules[name], keep, heads)  # qkv: kept heads × head dim per block
        if heads:
            modules[name.rsplit(".", 1)[0]].num_heads = heads
    wrong = [
        name
        for name, (keep, heads) in targets.items()
        if _out_channels(modules[name]) != (3 * keep if heads else keep)
    ]
    if wrong:  # coupled layers that the slimmable model slices differently
        raise ValueError(f"DepGraph couples layers the configuration keeps apart: {wrong[:5]}")
    _sync_attention(model)
    check_runs(model, example)
    return make_record(
        model,
        SimpleNamespace(DG=graph),
        example,
        None,
        "width",
        False,
        [],
        None,
        configuration={k: float(v) for k, v in full.items()},
    )


def static_model(
    slim: nn.Module,
    config: Mapping[str, float],
    source: Mapping | nn.Module,
    example: torch.Tensor,
) -> nn.Module:
    """A plain network computing as ``slim`` at ``config``, with no slicing at run time.

    The record of :func:`width_record` is replayed on a fresh model holding ``slim``'s full
    parameters, so DepGraph itself cuts out the kept slices (per block where the slimmable
    layers keep per-block channels); every batch norm then takes the running statistics of
    its width at ``config``. The result carries the record as ``pruning_record``, so its
    checkpoints rebuild through ``build_model`` like any pruned model's.

    Args:
        slim: the slimmable model; left unchanged.
        config: the configuration to deploy.
        source: the model config or an unconverted model of ``slim``'s architecture.
        example: an input batch (B×3×H×W) for tracing.

    Returns:
        The static model, in eval mode.
    """
    from vision_mtl.compress.pruning import apply_record

    full = check_configuration(slim.decoder, config)
    record = width_record(source, full, example)
    model = _plain_model(source)
    state = model.state_dict()
    model.load_state_dict({k: v for k, v in slim.state_dict().items() if k in state})
    apply_record(model, record)
    slims = dict(slim.named_modules())
    with configuration(slim, full), torch.no_grad():
        for name, module in model.named_modules():
            source_bn = slims.get(name)
            if isinstance(source_bn, SwitchableBatchNorm2d):
                stats = source_bn.stats_at(source_bn.width)
                if stats is not None:
                    module.running_mean.copy_(stats[0])
                    module.running_var.copy_(stats[1])
                    module.num_batches_tracked.copy_(stats[2])
    model.pruning_record = record
    return model.eval()
