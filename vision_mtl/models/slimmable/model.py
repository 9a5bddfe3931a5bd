"""Width configurations of a whole slimmable :class:`~vision_mtl.models.MultiTaskModel`.

``make_model_slimmable(model)`` converts the backbone (:func:`.convert.make_slimmable`), the
decoder and the heads (:func:`.decoders.make_decoder_slimmable`) in place. One configuration then
picks every width of the model::

    width_slots(model)   # {"encoder": "shared", "decoder": "shared", "semseg": "per task", ...}
    set_configuration(model, {"encoder": 0.5, "decoder": 0.5, "semseg": 1.0, "depth": 0.25})
    with configuration(model, narrowest_configuration(model)):
        logits = model(x, mode="tensor")

The backbone and the decoder must be set together (the decoder's input layers expect the
backbone's width), which is why the backbone's width is the ``"encoder"`` slot of the
configuration rather than set on its own. Slots missing from a configuration keep their width.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from torch import nn

from vision_mtl.models.slimmable.convert import (
    DEFAULT_WIDTHS,
    make_slimmable,
    set_width,
    slimmable_widths,
)
from vision_mtl.models.slimmable.decoders import (
    ENCODER,
    check_configuration,
    decoder_slot_widths,
    decoder_width_slots,
    make_decoder_slimmable,
    plan_decoder,
    set_decoder_configuration,
)


def make_model_slimmable(model: nn.Module, widths: Sequence[float] = DEFAULT_WIDTHS) -> nn.Module:
    """Convert the backbone, decoder and heads of a multitask model, in place.

    Args:
        model: a built ``MultiTaskModel`` (``backbone``, ``decoder``, ``heads``). A backbone
            already converted by ``make_slimmable`` keeps its widths for the encoder slot.
        widths: the widths offered by the backbone (unless already converted), the decoder
            and every task.

    Returns:
        ``model``, at its widest configuration.

    Raises:
        ValueError: ``make_slimmable`` was applied to the whole model rather than its backbone,
            or the decoder was sized for other channels than the backbone reports.
        TypeError: a backbone, decoder or head type that is not slimmable.
    """
    if "slimmable_widths" in model.__dict__:
        raise ValueError(
            "make_slimmable was applied to the whole model; convert model.backbone instead"
        )
    decoder = model.decoder
    if list(decoder.in_channels) != list(model.backbone.out_channels):
        raise ValueError(
            f"the decoder expects channels {decoder.in_channels}, the backbone gives "
            f"{model.backbone.out_channels}"
        )
    plan_decoder(decoder, model.heads)  # refuse before converting the backbone
    if not any("slimmable_widths" in m.__dict__ for m in model.backbone.modules()):
        make_slimmable(model.backbone, widths)
    make_decoder_slimmable(decoder, model.heads, widths, slimmable_widths(model.backbone))
    return model


def width_slots(model: nn.Module) -> dict[str, str]:
    """Slot name → ``"shared"`` or ``"per task"`` for a converted model."""
    return decoder_width_slots(model.decoder)


def slot_widths(model: nn.Module) -> dict[str, tuple[float, ...]]:
    """Slot name → the widths it offers (the trained ones)."""
    return decoder_slot_widths(model.decoder)


def get_configuration(model: nn.Module) -> dict[str, float]:
    """The active configuration (every slot)."""
    return check_configuration(model.decoder, {})


def full_configuration(model: nn.Module) -> dict[str, float]:
    """Every slot at its widest width: the converted model computes as the unconverted one."""
    return {slot: max(w) for slot, w in slot_widths(model).items()}


def narrowest_configuration(model: nn.Module) -> dict[str, float]:
    """Every slot at its narrowest width (the smallest model of a sandwich step)."""
    return {slot: min(w) for slot, w in slot_widths(model).items()}


def set_configuration(model: nn.Module, config: Mapping[str, float]) -> dict[str, float]:
    """Set the backbone and the decoder/head widths of ``model`` from one configuration.

    Args:
        model: a model converted by :func:`make_model_slimmable`.
        config: slot → width, e.g. ``{"encoder": 0.5, "decoder": 0.5, "semseg": 1.0}``;
            slots left out keep their width.

    Returns:
        The previous complete configuration.

    Raises:
        ValueError: an unknown slot or a width the slot does not offer (nothing is changed).
    """
    full = check_configuration(model.decoder, config)  # validate before changing anything
    set_width(model.backbone, full[ENCODER])
    return set_decoder_configuration(model.decoder, model.heads, full)


@contextmanager
def configuration(model: nn.Module, config: Mapping[str, float]) -> Iterator[nn.Module]:
    """Run the ``with`` block at ``config``, restoring the previous configuration afterwards."""
    previous = set_configuration(model, config)
    try:
        yield model
    finally:
        set_configuration(model, previous)
