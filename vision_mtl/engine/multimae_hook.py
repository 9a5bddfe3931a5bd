"""MultiMAE reconstruction pictures during pretraining (and the helpers the CLI shares).

:class:`MultiMAEGridHook` draws the first samples of the training set (or of the validation set
when the run validates) through the model in eval mode — fixed masks from its ``eval_seed`` —
as one grid (:func:`vision_mtl.models.multimae.pictures.reconstruction_grid`) and writes it to
``<work_dir>/<out_dir>/iter_<n>.png`` every ``interval`` training iterations, after each
validation and at the end of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from vision_mtl.datasets.transforms import PackMultiTaskInputs, multitask_collate
from vision_mtl.models.multimae.pictures import (
    MIN_TILE_HEIGHT,
    reconstruction_grid,
    save_png,
)
from vision_mtl.registry import HOOKS


def _unwrap(model):
    return getattr(model, "module", model)


@torch.no_grad()
def predict_samples(model, samples: Sequence[dict]) -> list[dict]:
    """MultiMAE ``predict`` outputs of packed samples (``PackMultiTaskInputs`` dicts).

    The model runs in eval mode (masks from ``eval_seed``: the same at every call) and is put
    back in the mode it was in.
    """
    was_training = model.training
    model.eval()
    try:
        data = model.data_preprocessor(multitask_collate(list(samples)), False)
        return model(**data, mode="predict")
    finally:
        model.train(was_training)


def draw_reconstructions(
    model, dataset, num: int = 4, min_tile_height: int = MIN_TILE_HEIGHT
) -> np.ndarray:
    """The reconstruction grid of the first ``num`` samples of ``dataset``.

    Samples are read with ``dataset.load_sample`` and packed without the dataset's pipeline (no
    random flip or crop), so every picture shows the same views and drawing one consumes no
    random numbers of the training run.
    """
    model = _unwrap(model)
    count = min(int(num), len(dataset))
    if count < 1:
        raise ValueError(f"nothing to draw: num={num}, a dataset of {len(dataset)} samples")
    pack = PackMultiTaskInputs()
    samples = [pack(dataset.load_sample(i)) for i in range(count)]
    outputs = predict_samples(model, samples)
    pre = model.data_preprocessor
    names = [str(s["meta"].get("name", i)) for i, s in enumerate(samples)]
    semseg = (getattr(model, "modality_settings", None) or {}).get("semseg") or {}
    return reconstruction_grid(
        outputs,
        pre.mean.detach().cpu().numpy().reshape(-1),
        pre.std.detach().cpu().numpy().reshape(-1),
        semseg.get("num_classes"),
        names,
        min_tile_height,
    )


@HOOKS.register_module()
class MultiMAEGridHook(Hook):
    """Write MultiMAE reconstruction grids to the work directory.

    Args:
        interval: draw every ``interval`` training iterations (0: only after validation and at
            the end of training).
        num_samples: samples in the picture (the dataset's first ones).
        out_dir: folder under the work directory.
        min_tile_height: tiles are enlarged to at least this height.
    """

    priority = "LOW"

    def __init__(
        self,
        interval: int = 0,
        num_samples: int = 4,
        out_dir: str = "multimae_vis",
        min_tile_height: int = MIN_TILE_HEIGHT,
    ) -> None:
        if int(interval) < 0 or int(num_samples) < 1:
            raise ValueError(
                f"MultiMAEGridHook: interval must be >= 0 and num_samples >= 1, got "
                f"{interval!r}, {num_samples!r}"
            )
        self.interval = int(interval)
        self.num_samples = int(num_samples)
        self.out_dir = out_dir
        self.min_tile_height = int(min_tile_height)
        self.written: list[Path] = []

    def _dataset(self, runner, split: str):
        loop = getattr(runner, f"_{split}_loop", None)
        loader = getattr(loop, "dataloader", None)
        if loader is None:
            loader = getattr(runner, f"_{split}_dataloader", None)
            loader = loader if hasattr(loader, "dataset") else None
        return getattr(loader, "dataset", None)

    def draw(self, runner, split: str = "train", iteration: int | None = None) -> Path | None:
        """Draw the grid of ``split``'s first samples as ``iter_<iteration>.png`` (default: the
        runner's iteration); returns the PNG written (on the main process, else None)."""
        if not is_main_process():
            return None
        dataset = self._dataset(runner, split)
        if dataset is None:
            return None
        grid = draw_reconstructions(runner.model, dataset, self.num_samples, self.min_tile_height)
        count = runner.iter if iteration is None else iteration
        path = Path(runner.work_dir) / self.out_dir / f"iter_{count}.png"
        save_png(grid, path)
        self.written.append(path)
        return path

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        # runner.iter counts up after this hook: name the file by the finished iterations. The
        # last iteration is drawn by after_train.
        if self.interval and self.every_n_train_iters(runner, self.interval):
            if runner.iter + 1 < runner.max_iters:
                self.draw(runner, "train", runner.iter + 1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.draw(runner, "val")

    def after_train(self, runner) -> None:
        self.draw(runner, "train")
