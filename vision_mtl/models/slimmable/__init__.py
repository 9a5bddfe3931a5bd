"""Slimmable timm backbones: one shared parameter set, the first k channels per width."""

from vision_mtl.models.slimmable.convert import (
    DEFAULT_WIDTHS,
    active_width,
    check_width,
    get_width,
    make_slimmable,
    out_channels_at,
    set_width,
    slimmable_widths,
)
from vision_mtl.models.slimmable.layers import (
    SlimConv2d,
    SlimLayerNorm,
    SlimLinear,
    SwitchableBatchNorm2d,
    channels_at,
)

__all__ = [
    "DEFAULT_WIDTHS",
    "SlimConv2d",
    "SlimLayerNorm",
    "SlimLinear",
    "SwitchableBatchNorm2d",
    "active_width",
    "channels_at",
    "check_width",
    "get_width",
    "make_slimmable",
    "out_channels_at",
    "set_width",
    "slimmable_widths",
]
