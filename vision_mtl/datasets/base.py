"""The common shape of every vision_mtl dataset.

A dataset declares the tasks it can provide; asking it for another fails when it is built, naming
both, so a config never trains for minutes before discovering a missing task. Each sample is one
plain dict (DESIGN.md, "Data flow"): ``image``, one array per requested task, and ``meta``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mmengine.dataset import Compose
from torch.utils.data import Dataset

from vision_mtl.paths import check_sample_id
from vision_mtl.registry import TRANSFORMS
from vision_mtl.tasks import check_tasks


def read_id_list(path: Path, layout: str, where: str) -> list[str]:
    """Sample ids of a split file, one per line; a missing or empty file names the path.

    Ids that are absolute or contain ``..`` are refused (they become output file names).
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"split file {str(path)!r} is missing. Expected layout:\n{layout}\n{where}"
        )
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for number, sample_id in enumerate(ids, 1):
        check_sample_id(sample_id, f"split file {str(path)!r}, id {number}")
    if not ids:
        raise ValueError(f"split file {str(path)!r} lists no sample ids")
    return ids


class MultiTaskDataset(Dataset):
    """Base class: task validation, the transform pipeline and ``metainfo``.

    Subclasses set :attr:`PROVIDES`, optionally :attr:`TASK_SETS` (named task lists such as
    ``"nyud"``), fill :attr:`num_classes` for label tasks and implement :meth:`__len__` and
    :meth:`load_sample`.

    Args:
        tasks: task names, or the name of one of the dataset's :attr:`TASK_SETS`.
        pipeline: transform configs (``type`` in the transform registry) or callables, applied
            in order to each loaded sample.
    """

    PROVIDES: ClassVar[tuple[str, ...]] = ()
    TASK_SETS: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, tasks: str | Sequence[str], pipeline: Sequence[Any] = ()) -> None:
        if isinstance(tasks, str):
            if tasks not in self.TASK_SETS:
                raise KeyError(
                    f"{type(self).__name__} has no task set {tasks!r}; "
                    f"choose one of {sorted(self.TASK_SETS)} or list the tasks"
                )
            tasks = self.TASK_SETS[tasks]
        self.tasks = check_tasks(tasks, self.PROVIDES, where=type(self).__name__)
        # Built through our registry so a dataset works without a config's default scope.
        self.pipeline = Compose(
            [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        )

    num_classes: ClassVar[dict[str, int]] = {}
    class_names: ClassVar[dict[str, tuple[str, ...]]] = {}

    @property
    def metainfo(self) -> dict:
        """What models, metrics and exporters need to know of the data."""
        return dict(
            dataset=type(self).__name__,
            tasks=list(self.tasks),
            num_classes={t: n for t, n in self.num_classes.items() if t in self.tasks},
            class_names={t: list(c) for t, c in self.class_names.items() if t in self.tasks},
        )

    def load_sample(self, index: int) -> dict:
        """Return the raw sample ``index``: ``image``, one array per task in ``self.tasks``, ``meta``."""
        raise NotImplementedError

    def check_map_sizes(self, sample: dict, sample_id: str) -> None:
        """Every task map must have the image's size; the error names the sample and the task."""
        shape = sample["image"].shape[:2]
        for task in self.tasks:
            if sample[task].shape[:2] != shape:
                raise ValueError(
                    f"{type(self).__name__} sample {sample_id!r}: {task} map is "
                    f"{sample[task].shape[:2]} but the image is {shape}"
                )

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range [0, {len(self)})")
        sample = self.load_sample(index)
        out = self.pipeline(sample)
        if out is None:
            raise RuntimeError(f"{type(self).__name__}: the pipeline dropped sample {index}")
        return out
