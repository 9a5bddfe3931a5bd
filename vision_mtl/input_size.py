"""The input size (H, W) a config's model is run at, asked the same way by every tool.

Export, ``get_flops``, ``prune``, ``benchmark`` and ``benchmark_decoders`` all need one image
size to trace, count or time the model. The answer, in order:

1. ``--shape H W`` (the ``shape`` argument), when given;
2. the data preprocessor's fixed canvas (``model.data_preprocessor.size``: NYUD-v2, PASCAL);
3. the test set's image size (``test_dataloader.dataset.image_size``: SynthScenes), rounded up
   to the preprocessor's ``size_divisor`` as the preprocessor pads it.

A config with neither (Cityscapes: test images are only padded, so their size is the data's)
has no size of its own, and the error says to pass ``--shape``. Every size must be a positive
multiple of the preprocessor's ``size_divisor``: the model is traced at what it is fed.
"""

from __future__ import annotations

import argparse
import os

from vision_mtl.utils import int_at_least

__all__ = ["InputSizeError", "add_shape_argument", "config_input_size", "positive_int"]


class InputSizeError(ValueError):
    """No input size can be found, or a given one does not fit the config's preprocessor."""


#: An argparse ``type``: an integer >= 1, else a one-sentence parse error.
positive_int = int_at_least(1, "must be a positive integer")


def add_shape_argument(parser: argparse.ArgumentParser, what: str = "input size") -> None:
    """Add ``--shape H W``, which overrides the size :func:`config_input_size` finds."""
    parser.add_argument(
        "--shape",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        help=f"{what} (default: the config's data preprocessor size, else its test image size)",
    )


def config_input_size(
    cfg, shape: tuple[int, int] | list[int] | None = None, config: str | os.PathLike | None = None
) -> tuple[int, int]:
    """The (H, W) ``cfg``'s model is traced, counted and timed at (see the module docstring).

    Args:
        cfg: an mmengine ``Config`` (or a dict with ``model`` and ``test_dataloader``).
        shape: ``--shape``'s two values, which win over the config; ``None`` to ask the config.
        config: the config's path, named in errors.

    Raises:
        InputSizeError: no size in the config and no ``shape``, or a size that is not positive
            or not a multiple of the preprocessor's ``size_divisor``.
    """
    name = f"config {str(config)!r}" if config is not None else "the config"
    pre = (cfg.get("model") or {}).get("data_preprocessor") or {}
    divisor = int(pre.get("size_divisor") or 1)
    if shape is None:
        test_set = (cfg.get("test_dataloader") or {}).get("dataset") or {}
        size = pre.get("size") or test_set.get("image_size")
        if not size:
            raise InputSizeError(
                f"{name} sets neither model.data_preprocessor.size nor "
                "test_dataloader.dataset.image_size, so it has no input size; pass --shape H W"
            )
        shape = tuple(-(-int(s) // divisor) * divisor for s in size)
        flag = f"the input size of {name}"
    else:
        flag = "--shape"
    if len(shape) != 2:
        raise InputSizeError(f"{flag} must be two integers H W, got {list(shape)}")
    height, width = (int(s) for s in shape)
    if min(height, width) < 1 or height % divisor or width % divisor:
        raise InputSizeError(
            f"{flag} {height} {width} must be positive multiples of the size_divisor {divisor} "
            f"of {name}'s data preprocessor"
        )
    return height, width
