"""Turn a built timm ViT or ResNet into a slimmable network, in place, and pick its width.

``make_slimmable(model)`` swaps the class of every ``nn.Linear`` / ``nn.Conv2d`` /
``nn.LayerNorm`` / ``nn.BatchNorm2d`` of each timm ``VisionTransformer`` or ``ResNet`` found in
``model`` (the model itself, a :class:`~vision_mtl.models.backbones.TimmBackbone`, or anything
holding one) for its slimmable counterpart in :mod:`.layers`. timm's own forward code runs
unchanged — the models are wrapped, not forked. Then::

    set_width(model, 0.5)            # every later forward runs at half width
    with active_width(model, 0.25):  # or for a block only, restoring the previous width
        feats = model(x)
    out_channels_at(model, 0.25)     # the feature channels a decoder sees at that width

Only the widths given at conversion (default ``(0.25, 0.5, 0.75, 1.0)``) are offered; any other
width raises ``ValueError`` — only trained widths are offered.

Channel rule: every layer keeps ``channels_at(w, C) = max(1, round_half_up(w × C))`` of its
``C`` channels, the image input (3 channels of the first convolution) and a classifier's outputs
excepted. The rule being the same everywhere makes residual sums consistent.

ViT attention — **fewer heads**: the head dimension stays fixed and a width keeps the first
``channels_at(w, num_heads)`` heads (at least one). ``qkv`` keeps those heads' rows in each of its
q, k and v blocks, ``proj`` reads them back; the attention scale is unchanged, so every width is a
standard multi-head attention over whole heads of the full model. The attention's inner width is
``heads × head_dim`` and may differ from the embedding width when ``w × num_heads`` is not whole
(e.g. 2 heads at width 0.25 keep one head of 16 channels for an 8-channel embedding).

ResNet batch norm — **switchable**: affine parameters shared (sliced), running statistics per
width (see :class:`.layers.SwitchableBatchNorm2d`). The state dict gains the narrower widths'
buffers (``running_mean_w0500``, ...); full-width keys are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from vision_mtl.models.slimmable.layers import (
    PrefixParamSlicer,
    SlimConv2d,
    SlimLayerNorm,
    SlimLinear,
    SlimmableLayer,
    SwitchableBatchNorm2d,
    WidthTable,
    channels_at,
)

DEFAULT_WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
_PREFIX_PARAMS = ("cls_token", "reg_token", "pos_embed")


def make_slimmable(model: nn.Module, widths: Sequence[float] = DEFAULT_WIDTHS) -> nn.Module:
    """Convert every timm ViT / ResNet inside ``model`` to slimmable layers, in place.

    Args:
        model: a built timm ``VisionTransformer`` or ``ResNet``, or a module holding them (e.g. a
            ``TimmBackbone``). Its parameters are kept as they are (same objects, same keys).
        widths: the offered widths, each in (0, 1]. The model starts at the widest.

    Returns:
        ``model`` itself, now at the widest width.

    Raises:
        ValueError: bad widths, or a layer the conversion cannot slim (the model is then left
            unconverted).
        TypeError: ``model`` holds no timm ViT or ResNet.
    """
    offered = _check_widths(widths)
    if any("slimmable_widths" in m.__dict__ for m in model.modules()):
        raise ValueError(f"{type(model).__name__} is already slimmable")
    roots = _find_roots(model)
    plans = [_plan(root, offered) for root in roots]  # validate everything before changing
    for plan in plans:
        _apply(plan, offered)
    model.slimmable_widths = offered
    model.slimmable_width = offered[-1]
    return model


def _holder(model: nn.Module) -> nn.Module:
    """``model`` or the first of its submodules that :func:`make_slimmable` converted."""
    for module in model.modules():
        if "slimmable_widths" in module.__dict__:
            return module
    raise ValueError(f"{type(model).__name__} is not slimmable: call make_slimmable first")


def slimmable_widths(model: nn.Module) -> tuple[float, ...]:
    """The widths ``model`` (or the converted module inside it) offers; ``ValueError`` if none."""
    return _holder(model).slimmable_widths


def check_width(model: nn.Module, width: float) -> float:
    """The offered width equal to ``width``; ``ValueError`` naming the allowed set otherwise."""
    offered = slimmable_widths(model)
    for w in offered:
        if abs(float(width) - w) < 1e-9:
            return w
    raise ValueError(
        f"width {width} is not offered; allowed widths: {list(offered)} "
        "(only trained widths are offered)"
    )


def set_width(model: nn.Module, width: float) -> float:
    """Make every later forward of ``model`` run at ``width``; returns the previous width.

    ``model`` may be the converted module or any module holding it (e.g. the multitask model).
    """
    width = check_width(model, width)
    holder = _holder(model)
    previous = holder.slimmable_width
    for module in holder.modules():
        if isinstance(module, SlimmableLayer):
            module.set_width(width)
        heads = getattr(module, "slim_heads", None)
        if heads is not None:
            module.num_heads = heads[width]
            module.attn_dim = heads[width] * module.head_dim
        slicer = getattr(module, "slim_prefix", None)
        if isinstance(slicer, PrefixParamSlicer):
            slicer.width = width
    holder.slimmable_width = width
    return previous


def get_width(model: nn.Module) -> float:
    """The active width of a slimmable ``model``."""
    return _holder(model).slimmable_width


@contextmanager
def active_width(model: nn.Module, width: float) -> Iterator[nn.Module]:
    """Run the ``with`` block at ``width``, restoring the previous width afterwards."""
    previous = set_width(model, width)
    try:
        yield model
    finally:
        set_width(model, previous)


def out_channels_at(model: nn.Module, width: float) -> list[int]:
    """Channels of each feature level at ``width``, for decoders sizing themselves.

    Reads the full-width channels from ``model.out_channels`` (``TimmBackbone``) or, for a bare
    timm model, ``model.feature_info``. ``model.out_channels`` itself keeps the full width (the
    parameters' shapes).
    """
    width = check_width(model, width)
    holder = _holder(model)
    full = getattr(holder, "out_channels", None)
    if full is None:
        full = [int(info["num_chs"]) for info in holder.feature_info]
    return [channels_at(width, int(c)) for c in full]


def _check_widths(widths: Sequence[float]) -> tuple[float, ...]:
    offered = tuple(sorted({float(w) for w in widths}))
    if not offered or not all(0.0 < w <= 1.0 for w in offered):
        raise ValueError(f"widths must be a non-empty set of numbers in (0, 1], got {widths!r}")
    return offered


def _find_roots(model: nn.Module) -> list[nn.Module]:
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    roots = [m for m in model.modules() if isinstance(m, VisionTransformer | ResNet)]
    if not roots:
        raise TypeError(
            f"make_slimmable supports timm VisionTransformer and ResNet; "
            f"{type(model).__name__} holds neither"
        )
    return roots


def _table(widths: tuple[float, ...], c_in: int | None, c_out: int | None) -> WidthTable:
    """Per-width (k_in, k_out); ``None`` keeps that side at ``0`` (unused)."""
    return {
        w: (
            0 if c_in is None else channels_at(w, c_in),
            0 if c_out is None else channels_at(w, c_out),
        )
        for w in widths
    }


def _plan(root: nn.Module, widths: tuple[float, ...]) -> dict:
    """Decide how each layer of ``root`` slims, refusing anything it cannot slim."""
    from timm.layers import Attention, LayerNorm

    layers: dict[nn.Module, tuple[type, WidthTable, int]] = {}
    heads: dict[nn.Module, dict[float, int]] = {}
    classifier = root.get_classifier() if hasattr(root, "get_classifier") else None
    first_conv = next((m for m in root.modules() if type(m) is nn.Conv2d), None)

    for name, module in root.named_modules():
        if name.endswith("attn") and type(module) is not Attention:
            raise ValueError(f"{name}: {type(module).__name__} is not slimmable yet")
        if type(module) is Attention:
            if module.gate is not None or not all(
                isinstance(m, nn.Identity) for m in (module.q_norm, module.k_norm, module.norm)
            ):
                raise ValueError(f"{name}: gated or normalised attention is not slimmable yet")
            per_width = {w: channels_at(w, module.num_heads) for w in widths}
            heads[module] = per_width
            hd = module.head_dim
            dim = module.qkv.in_features
            qkv = {w: (channels_at(w, dim), per_width[w] * hd) for w in widths}
            proj = {
                w: (per_width[w] * hd, channels_at(w, module.proj.out_features)) for w in widths
            }
            layers[module.qkv] = (SlimLinear, qkv, 3)
            layers[module.proj] = (SlimLinear, proj, 1)

    for name, module in root.named_modules():
        kind = type(module)
        if module in layers or module is root:
            continue
        if kind is nn.Linear:
            c_out = None if module is classifier else module.out_features
            table = _table(widths, module.in_features, c_out)
            if c_out is None:
                table = {w: (k_in, module.out_features) for w, (k_in, _) in table.items()}
            layers[module] = (SlimLinear, table, 1)
        elif kind is nn.Conv2d:
            if module.padding_mode != "zeros":
                raise ValueError(f"{name}: padding mode {module.padding_mode!r} is not slimmable")
            depthwise = module.groups == module.in_channels == module.out_channels
            if module.groups != 1 and not depthwise:
                raise ValueError(f"{name}: grouped convolution is not slimmable")
            table = _table(widths, module.in_channels, module.out_channels)
            if module is first_conv:  # reads the image: all input channels at every width
                table = {w: (module.in_channels, k) for w, (_, k) in table.items()}
            layers[module] = (SlimConv2d, table, 1)
        elif kind in (nn.LayerNorm, LayerNorm) and len(module.normalized_shape) == 1:
            layers[module] = (SlimLayerNorm, _table(widths, None, module.normalized_shape[0]), 1)
        elif kind is nn.BatchNorm2d:
            layers[module] = (SwitchableBatchNorm2d, _table(widths, None, module.num_features), 1)
        elif any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"{name} ({kind.__name__}) has parameters and is not slimmable")

    prefix = [n for n in _PREFIX_PARAMS if getattr(root, n, None) is not None]
    own = {n for n, _ in root.named_parameters(recurse=False)}
    if own - set(prefix):
        raise ValueError(
            f"{type(root).__name__} parameters {sorted(own - set(prefix))} unsliceable"
        )
    return {"root": root, "layers": layers, "heads": heads, "prefix": prefix}


def _apply(plan: dict, widths: tuple[float, ...]) -> None:
    """Swap classes and attach the width tables decided by :func:`_plan`."""
    for module, (cls, table, groups) in plan["layers"].items():
        module.__class__ = cls
        if cls is SlimLinear:
            module.init_slim_linear(table, groups)
        elif cls is SwitchableBatchNorm2d:
            module.init_switchable(table)
        else:
            module.init_slimmable(table)
    for attn, per_width in plan["heads"].items():
        attn.slim_heads = per_width
    root = plan["root"]
    if plan["prefix"]:
        dim = root._parameters[plan["prefix"][0]].shape[-1]
        slicer = PrefixParamSlicer(root, plan["prefix"], _table(widths, None, dim))
        root.slim_prefix = slicer
        root.patch_embed.register_forward_pre_hook(slicer.install)
        root.pos_drop.register_forward_hook(slicer.remove)
