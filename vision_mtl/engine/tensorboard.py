"""Tensorboard through mmengine's visualizer: one config switch, and a picture per validation.

``tensorboard = True`` in a config (or ``--cfg-options tensorboard=True``) is applied by
:func:`apply_tensorboard_switch` when the config is loaded (``vision_mtl.apis.load_config``):

* the run's ``visualizer`` gets mmengine's ``TensorboardVisBackend`` beside its other backends
  (mmengine's default, ``LocalVisBackend``, when the config names no visualizer). mmengine's
  ``LoggerHook`` hands every logged training scalar (losses, learning rate, timings) and the
  validation metrics to ``runner.visualizer.add_scalars``, so they reach tensorboard without
  any code here;
* :class:`ValPredictionGridHook` joins ``custom_hooks``: after each validation it writes one
  picture of the first validation images (input, ground truth and prediction per task, drawn by
  :func:`vision_mtl.visualization.make_grid`) as ``val/predictions``.

The event files go to ``<work_dir>/<timestamp>/vis_data/``, where mmengine's visualizer puts
every backend's files. Importing this module registers the hook and does nothing else.
"""

from __future__ import annotations

import importlib
import logging

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from vision_mtl.registry import HOOKS
from vision_mtl.visualization import make_grid

#: the top-level config key of the switch
TENSORBOARD_KEY = "tensorboard"
#: mmengine's tensorboard backend, as a ``vis_backends`` entry names it
BACKEND = "TensorboardVisBackend"
#: the tag of the prediction picture
GRID_TAG = "val/predictions"
#: grey rows between the images of the prediction picture
_GAP = 8
_GAP_GREY = 128
_WHITE = 255


def require_tensorboard() -> None:
    """Fail now, with what to install, when tensorboard cannot be imported.

    mmengine's backend imports ``torch.utils.tensorboard`` only when it first writes, i.e. after
    the first logging interval of training; without this check a missing package stopped a run
    there, or (mmengine's message) asked for the unrelated ``future`` package.

    Raises:
        ImportError: the ``tensorboard`` package (or torch's writer on top of it) does not
            import.
    """
    try:
        importlib.import_module("tensorboard")
        importlib.import_module("torch.utils.tensorboard")
    except ImportError as err:
        raise ImportError(
            f"{TENSORBOARD_KEY}=True needs the tensorboard package, which does not import here "
            f"({err}); install it with `pip install tensorboard`, or set "
            f"{TENSORBOARD_KEY}=False"
        ) from err


def _type_name(kind) -> str:
    """The class name a config ``type`` refers to (a string, possibly scoped, or a class)."""
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return name.split(".")[-1]


def _is_tensorboard(backend) -> bool:
    """Whether a ``vis_backends`` entry (a config dict or a built backend) is tensorboard's."""
    if isinstance(backend, dict):
        return _type_name(backend.get("type")) == BACKEND
    return any(c.__name__ == BACKEND for c in type(backend).__mro__)


def with_tensorboard_backend(visualizer: dict | None, source: str = "the config") -> dict:
    """The ``visualizer`` config with the tensorboard backend among its ``vis_backends``.

    Without a visualizer, mmengine's default (a ``Visualizer`` writing with
    ``LocalVisBackend``) plus tensorboard; a visualizer of the user's keeps its type, arguments
    and backends, and gains tensorboard unless it already has it.

    Args:
        visualizer: the config's ``visualizer`` (``None`` when it has none); not modified.
        source: the config file, for the error message.

    Raises:
        TypeError: ``visualizer`` or its ``vis_backends`` is not a config dict (or list of them).
    """
    if visualizer is None:
        return dict(
            type="Visualizer", vis_backends=[dict(type="LocalVisBackend"), dict(type=BACKEND)]
        )
    if not isinstance(visualizer, dict):
        raise TypeError(
            f"{source}: visualizer must be a dict (a Visualizer config) for "
            f"{TENSORBOARD_KEY}=True to add its backend, got {visualizer!r}"
        )
    visualizer = dict(visualizer)
    backends = visualizer.get("vis_backends")
    if backends is None:
        backends = []
    elif isinstance(backends, dict):
        backends = [backends]
    elif isinstance(backends, list | tuple):
        backends = list(backends)
    else:
        raise TypeError(
            f"{source}: visualizer.vis_backends must be a list of backend configs, got {backends!r}"
        )
    if not any(_is_tensorboard(b) for b in backends):
        backends.append(dict(type=BACKEND))
    visualizer["vis_backends"] = backends
    return visualizer


def apply_tensorboard_switch(cfg: Config, source: str = "the config") -> bool:
    """Turn tensorboard logging on in ``cfg`` when its ``tensorboard`` key is ``True``.

    Adds the tensorboard backend to the visualizer (:func:`with_tensorboard_backend`) and a
    :class:`ValPredictionGridHook` to ``custom_hooks``; neither is added twice, so a config
    dumped by a run with the switch on loads to the same thing. ``False`` (or no key: configs
    not built on ``_base_/default_runtime.py``) leaves the config as it is, including a
    tensorboard backend the user configured.

    Args:
        cfg: the loaded config, modified in place.
        source: the config file, for the error messages.

    Returns:
        Whether the switch is on.

    Raises:
        ValueError: the key holds something other than ``True`` or ``False``.
        ImportError: the switch is on and tensorboard is not installed
            (:func:`require_tensorboard`).
    """
    value = cfg.get(TENSORBOARD_KEY, False)
    if not isinstance(value, bool):
        raise ValueError(
            f"{source}: {TENSORBOARD_KEY}={value!r} ({type(value).__name__}); expected True or "
            f"False (--cfg-options {TENSORBOARD_KEY}=True)"
        )
    if not value:
        return False
    require_tensorboard()
    cfg.visualizer = with_tensorboard_backend(cfg.get("visualizer"), source)
    hooks = list(cfg.get("custom_hooks") or [])
    name = ValPredictionGridHook.__name__
    if not any(isinstance(h, dict) and _type_name(h.get("type")) == name for h in hooks):
        hooks.append(dict(type=name))
    cfg.custom_hooks = hooks
    return True


def stack_grids(grids: list[np.ndarray], gap: int = _GAP) -> np.ndarray:
    """Pictures one above the other, padded with white to the widest, grey rows between them.

    Images of one dataset may differ in size (PASCAL), so their grids may differ in width.
    """
    if not grids:
        raise ValueError("stack_grids needs at least one picture")
    width = max(g.shape[1] for g in grids)
    rows = []
    for index, grid in enumerate(grids):
        if index:
            rows.append(np.full((gap, width, 3), _GAP_GREY, np.uint8))
        pad = np.full((grid.shape[0], width - grid.shape[1], 3), _WHITE, np.uint8)
        rows.append(np.concatenate([grid, pad], axis=1))
    return np.concatenate(rows, axis=0)


def _unwrap(model):
    return getattr(model, "module", model)


@HOOKS.register_module()
class ValPredictionGridHook(Hook):
    """After each validation, one picture of the first validation images to the visualizer.

    Per image, the :func:`vision_mtl.visualization.make_grid` grid (input, ground truth and
    prediction of every task, with legends and colour bars) as ``PredictionGridHook`` draws it
    for test images; the grids are stacked into one picture and written with
    ``runner.visualizer.add_image(tag, picture, step=runner.iter)``, i.e. to every backend of
    the visualizer. (``LocalVisBackend`` writes nothing for the default tag: mmengine names the
    file ``vis_image/val/predictions_<step>.png`` and does not create the ``val`` folder, and
    OpenCV's write fails without an error. Tensorboard is where the picture goes.)

    Only the main process draws (under DDP, the first images of its share of the validation
    set), and only the grids of the images it keeps are held, never the batches. A picture that
    cannot be drawn is logged as a warning and the hook stops drawing: a logging aid must not
    end a training run.

    Args:
        max_images: how many validation images the picture shows.
        tag: the image's name in the visualizer.
        value_ranges: task → (low, high) of the colour bar, overriding the dataset's.
    """

    priority = "LOW"

    def __init__(
        self,
        max_images: int = 4,
        tag: str = GRID_TAG,
        value_ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        if not isinstance(max_images, int) or isinstance(max_images, bool) or max_images < 1:
            raise ValueError(
                f"ValPredictionGridHook: max_images must be a positive integer, got {max_images!r}"
            )
        self.max_images = max_images
        self.tag = tag
        self.value_ranges = value_ranges
        self.broken = False
        self._grids: list[np.ndarray] = []
        self._meta: dict = {}

    def before_val_epoch(self, runner) -> None:
        self._grids = []
        loop = getattr(runner, "_val_loop", None)
        dataset = getattr(getattr(loop, "dataloader", None), "dataset", None)
        meta = getattr(dataset, "metainfo", None) or getattr(
            _unwrap(runner.model), "dataset_meta", None
        )
        self._meta = dict(meta or {})

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.broken or not is_main_process() or data_batch is None:
            return
        if len(self._grids) >= self.max_images:
            return
        try:
            self._draw(runner, data_batch, outputs or [])
        except Exception as err:  # noqa: BLE001 (a picture must not stop training)
            self.broken = True
            self._grids = []
            print_log(
                f"ValPredictionGridHook: could not draw the validation predictions "
                f"({type(err).__name__}: {err}); no more {self.tag!r} pictures this run",
                logger="current",
                level=logging.WARNING,
            )

    def _draw(self, runner, data_batch: dict, outputs: list) -> None:
        """Append the grids of this batch's images, up to ``max_images`` in all."""
        num_classes = getattr(_unwrap(runner.model), "num_classes", {}) or {}
        for image, sample in zip(data_batch["inputs"], outputs):
            if len(self._grids) >= self.max_images:
                return
            h, w = sample["meta"].get("ori_shape", image.shape[-2:])
            rgb = image[:, :h, :w].permute(1, 2, 0)
            if rgb.dtype != torch.uint8:
                rgb = rgb.clamp(0, 255).to(torch.uint8)
            grid = make_grid(
                rgb.cpu().numpy(),
                sample["pred"],
                sample.get("gt"),
                num_classes,
                meta=self._meta,
                value_ranges=self.value_ranges,
            )
            self._grids.append(grid)

    def after_val_epoch(self, runner, metrics=None) -> None:
        grids, self._grids = self._grids, []
        if not grids or not is_main_process():
            return
        # The step of LoggerHook's validation metrics: runner.iter builds the train loop when
        # it is still a config (a validation-only run), so read it only once built.
        loop = runner._train_loop
        step = 0 if loop is None or isinstance(loop, dict) else runner.iter
        runner.visualizer.add_image(self.tag, stack_grids(grids), step=step)
