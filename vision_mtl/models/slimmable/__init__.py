"""Slimmable multitask models: one shared parameter set, the first k channels per width.

Backbones (timm ViT, ResNet) are converted by :func:`make_slimmable`; a whole MultiTaskModel with
the baseline or TaskExpert decoder by :func:`make_model_slimmable`, whose encoder, decoder and
per-task widths are set together by :func:`set_configuration` / :func:`configuration`.
:class:`SlimmableMultiTaskModel` is the config-built model trained by the sandwich rule;
:mod:`.search` turns a MAC budget and task preferences into a configuration and :mod:`.static`
deploys one as a plain network. docs/slimmable.md has the whole picture.
"""

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
from vision_mtl.models.slimmable.model import (
    configuration,
    make_model_slimmable,
    set_configuration,
    width_slots,
)
from vision_mtl.models.slimmable.multitask import (
    SlimmableMultiTaskModel,
    recalibrate_batch_norms,
)
from vision_mtl.models.slimmable.sandwich import (
    cikd_loss,
    distillation_loss,
    sample_configurations,
    sandwich_generator,
    sandwich_train_step,
)
from vision_mtl.models.slimmable.static import static_model, width_record

__all__ = [
    "DEFAULT_WIDTHS",
    "SlimConv2d",
    "SlimmableMultiTaskModel",
    "SlimLayerNorm",
    "SlimLinear",
    "SwitchableBatchNorm2d",
    "active_width",
    "channels_at",
    "cikd_loss",
    "distillation_loss",
    "sample_configurations",
    "sandwich_generator",
    "sandwich_train_step",
    "configuration",
    "make_model_slimmable",
    "set_configuration",
    "width_slots",
    "check_width",
    "get_width",
    "make_slimmable",
    "recalibrate_batch_norms",
    "out_channels_at",
    "set_width",
    "slimmable_widths",
    "static_model",
    "width_record",
]
