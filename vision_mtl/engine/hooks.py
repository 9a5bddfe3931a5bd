"""Hooks: progress bars with ETA, a task-consistency check, and prediction pictures."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner.base_loop import BaseLoop
from tqdm import tqdm

from vision_mtl.paths import output_path
from vision_mtl.registry import HOOKS
from vision_mtl.visualization import make_grid, save_grid


def _unwrap(model):
    return getattr(model, "module", model)


@HOOKS.register_module()
class TaskCheckHook(Hook):
    """Fail before the first iteration if model, datasets and evaluators disagree on tasks.

    A dataset already refuses tasks it cannot provide when it is built; this catches the rest — a
    model predicting a task its datasets were not asked for, a class count that differs from the
    dataset's, or an evaluator scoring a task the model does not predict — so the error names
    both before training instead of surfacing as a missing target or "Target 5 is out of bounds"
    mid-training, or a missing prediction at the first validation.
    """

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        model_tasks = list(getattr(_unwrap(runner.model), "tasks", []))
        for name in ("train", "val", "test"):
            loop = getattr(runner, f"_{name}_loop", None)
            if not isinstance(loop, BaseLoop):  # not built: this run does not use it
                continue
            dataset = loop.dataloader.dataset
            data_tasks = getattr(dataset, "tasks", None)
            if data_tasks is not None:
                missing = [t for t in model_tasks if t not in data_tasks]
                if missing:
                    raise KeyError(
                        f"the model predicts task(s) {missing} but the {name} dataset "
                        f"{type(dataset).__name__} was configured with tasks {list(data_tasks)}"
                    )
            self._check_classes(runner, name, dataset)
            for metric in getattr(getattr(loop, "evaluator", None), "metrics", []):
                scored = list(getattr(metric, "tasks", []))
                unknown = [t for t in scored if t not in model_tasks]
                if unknown:
                    raise KeyError(
                        f"the {name} evaluator {type(metric).__name__} scores task(s) {unknown} "
                        f"that the model does not predict (model tasks: {model_tasks})"
                    )

    @staticmethod
    def _check_classes(runner, split: str, dataset) -> None:
        """The model's class count per label task must be the dataset's (labels 0..n-1)."""
        model_classes = getattr(_unwrap(runner.model), "num_classes", {}) or {}
        data_classes = (getattr(dataset, "metainfo", None) or {}).get("num_classes") or {}
        for task, count in data_classes.items():
            if task in model_classes and int(model_classes[task]) != int(count):
                raise ValueError(
                    f"task {task!r}: the model predicts {model_classes[task]} classes but the "
                    f"{split} dataset {type(dataset).__name__} labels {count}; set "
                    f"model.tasks.{task}.num_classes={count}"
                )


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """tqdm bars with ETA for training (per iteration) and for validation/testing.

    Args:
        refresh_secs: minimum seconds between redraws (keeps CI logs short).
    """

    priority = "LOW"

    def __init__(self, refresh_secs: float = 2.0) -> None:
        self.refresh_secs = refresh_secs
        self._bar: tqdm | None = None

    def _open(self, total: int, desc: str, initial: int = 0) -> None:
        self._close()
        if is_main_process():
            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                mininterval=self.refresh_secs,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _step(self, postfix: str | None = None) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(1)

    def before_train(self, runner) -> None:
        self._open(runner.max_iters, "train", initial=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        total = (outputs or {}).get("loss")
        if isinstance(total, torch.Tensor):
            total = total.detach()
        self._step(f"loss={float(total):.3f}" if total is not None else None)

    def after_train(self, runner) -> None:
        self._close()

    def before_val_epoch(self, runner) -> None:
        self._train_bar, self._bar = self._bar, None
        self._open(len(runner.val_dataloader), "val")

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._close()
        self._bar = getattr(self, "_train_bar", None)

    def before_test_epoch(self, runner) -> None:
        self._open(len(runner.test_dataloader), "test")

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._close()


@HOOKS.register_module()
class PredictionGridHook(Hook):
    """Write input / ground truth / prediction PNG grids for the first test images.

    Class names and the depth colour-bar range come from the test dataset's ``metainfo`` (the
    model's ``dataset_meta`` when the dataset has none), see :func:`make_grid`.

    Args:
        out_dir: folder for the PNGs (one per image, named after the sample).
        max_images: how many images to draw.
        value_ranges: task → (low, high) of the colour bar, overriding the dataset's range.
    """

    priority = "LOW"

    def __init__(
        self,
        out_dir: str,
        max_images: int = 16,
        value_ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.max_images = max_images
        self.value_ranges = value_ranges
        self.written = 0
        self.meta: dict = {}

    def before_test_epoch(self, runner) -> None:
        self.written = 0
        loop = getattr(runner, "_test_loop", None)
        dataset = getattr(getattr(loop, "dataloader", None), "dataset", None)
        meta = getattr(dataset, "metainfo", None) or getattr(
            _unwrap(runner.model), "dataset_meta", None
        )
        self.meta = dict(meta or {})

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if not is_main_process() or data_batch is None:
            return
        num_classes = getattr(_unwrap(runner.model), "num_classes", {})
        for image, sample in zip(data_batch["inputs"], outputs or []):
            if self.written >= self.max_images:
                return
            h, w = sample["meta"].get("ori_shape", image.shape[-2:])
            rgb = image[:, :h, :w].permute(1, 2, 0).cpu().numpy()
            grid = make_grid(
                rgb,
                sample["pred"],
                sample.get("gt"),
                num_classes,
                meta=self.meta,
                value_ranges=self.value_ranges,
            )
            name = sample["meta"].get("name", f"{batch_idx:05d}_{self.written}")
            save_grid(grid, output_path(self.out_dir, str(name), ".png"))
            self.written += 1
