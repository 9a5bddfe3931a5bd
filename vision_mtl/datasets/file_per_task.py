"""Datasets stored as one file per task per sample, listed by split files.

Most multitask archives look like this: ``images/<id>.png``, ``depth/<id>.npy``, … and a text
file of ids per split. :class:`FilePerTaskDataset` does everything but decode: it checks the
root and the split, reads the split's ids (refusing unsafe ones), finds each task's file, names
the sample, task and path when one is missing, checks map sizes and fills ``meta``. A new
dataset in that shape is a short subclass that declares its folders and decodes each task
(:class:`~vision_mtl.datasets.nyud.NYUDv2Dataset` is one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vision_mtl.datasets.base import MultiTaskDataset, read_id_list


class FilePerTaskDataset(MultiTaskDataset):
    """A dataset whose samples are one image file plus one file per task.

    Subclasses set :attr:`PROVIDES`, :attr:`FILES` (task → folder and file suffix),
    :attr:`IMAGE`, :attr:`SPLIT_FILE`, :attr:`LAYOUT` and :attr:`WHERE` (shown in errors), and
    implement :meth:`read_image` and :meth:`decode`.

    Args:
        data_root: the dataset's root folder.
        split: one of :attr:`SPLITS`.
        tasks: any of :attr:`PROVIDES`, or the name of a task set.
        pipeline: transforms applied to each sample.
    """

    FILES: ClassVar[dict[str, tuple[str, str]]] = {}
    IMAGE: ClassVar[tuple[str, str]] = ("images", ".png")
    SPLIT_FILE: ClassVar[str] = "{split}.txt"
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val")
    LAYOUT: ClassVar[str] = ""
    WHERE: ClassVar[str] = ""

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        tasks: str | Sequence[str] = "all",
        pipeline: Sequence[Any] = (),
    ) -> None:
        super().__init__(tasks=tasks, pipeline=pipeline)
        name = type(self).__name__
        if split not in self.SPLITS:
            raise ValueError(f"{name} split must be one of {list(self.SPLITS)}, got {split!r}")
        self.root, self.split = Path(data_root), split
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{name} root {str(self.root)!r} does not exist. Expected layout:\n"
                f"{self.LAYOUT}\n{self.WHERE}"
            )
        split_file = self.root / self.SPLIT_FILE.format(split=split)
        self.ids = read_id_list(split_file, self.LAYOUT, self.WHERE)

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, task: str, sample_id: str) -> Path:
        """Where ``task``'s file of ``sample_id`` lives (``image`` for the input image)."""
        folder, suffix = self.IMAGE if task == "image" else self.FILES[task]
        return self.root / folder / f"{sample_id}{suffix}"

    def read_image(self, path: Path) -> np.ndarray:
        """The input image as H×W×3 uint8 RGB."""
        raise NotImplementedError

    def decode(self, task: str, path: Path) -> np.ndarray:
        """``task``'s target from its file, in the task's target layout (see vision_mtl.tasks)."""
        raise NotImplementedError

    def load_sample(self, index: int) -> dict:
        """Read the image and decode every requested task of sample ``index``."""
        sample_id = self.ids[index]
        sample: dict = {"image": self.read_image(self._existing("image", sample_id))}
        for task in self.tasks:
            sample[task] = self.decode(task, self._existing(task, sample_id))
        self.check_map_sizes(sample, sample_id)
        sample["meta"] = dict(name=sample_id, ori_shape=sample["image"].shape[:2], index=index)
        return sample

    def _existing(self, task: str, sample_id: str) -> Path:
        path = self.path(task, sample_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"{type(self).__name__} sample {sample_id!r}: {str(path)!r} is missing (task "
                f"{task!r}). Expected layout:\n{self.LAYOUT}"
            )
        return path
