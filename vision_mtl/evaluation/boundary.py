"""Boundary detection scored by the SEISM protocol: odsF, oisF and AP, in Python.

The per-image work (PNG truncation, NMS, thresholds, thinning, matching) is in
:mod:`.boundary_protocol`; this module wraps it as an mmengine metric that spreads images over
worker processes while the model keeps predicting, and can save the maps in the layout the
MATLAB tool reads.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from mmengine.dist import get_world_size

from vision_mtl.evaluation import boundary_protocol as protocol
from vision_mtl.evaluation.task_metrics import (
    TaskMetric,
    as_single_channel,
    binary_labels,
    check_probabilities,
    check_same_shape,
    resolve_pending,
    sample_pair,
)
from vision_mtl.paths import output_path
from vision_mtl.registry import METRICS
from vision_mtl.utils import atomic_write_bytes

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _worker_init() -> None:
    # One thread per worker: the pool already uses every core.
    cv2.setNumThreads(1)


def worker_pool(processes: int) -> ProcessPoolExecutor:
    """A process pool shared by every boundary metric of this process, created on first use.

    Workers are spawned (not forked: the parent holds torch's thread pools) and live until the
    interpreter exits, so a validation pass pays their start-up once per run.
    """
    pool = _POOLS.get(processes)
    if pool is None or getattr(pool, "_broken", False):  # a crashed worker breaks the pool
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_init)
        _POOLS[processes] = pool
    return pool


@atexit.register
def _shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def _score_image(png, gt, valid, thresholds, max_dist, gt_format) -> np.ndarray:
    # Module-level, so that worker processes can unpickle it.
    if valid is not None:
        png = np.where(valid, png, 0).astype(np.uint8)
    nms = protocol.suppress(png, skip_below=float(thresholds[0]))
    boundaries = protocol.gt_boundaries(gt, gt_format)
    if valid is not None:
        boundaries &= valid
    counts, _ = protocol.evaluate_image(nms, boundaries, thresholds, max_dist)
    return counts


@METRICS.register_module()
class BoundaryMetric(TaskMetric):
    """Boundary F-measures by SEISM's protocol, the one the multitask papers report, without MATLAB.

    Each prediction (a sigmoid probability map at the original image size) is written to 8 bits
    by truncation, non-maximum suppressed as a float map, thresholded at the 101 values of
    SEISM's ``parameters/HED.txt`` (``E > t``), thinned, and matched one-to-one to the thinned
    ground-truth boundary within ``max_dist × image diagonal`` (0.011 for NYUD-v2, 0.0075 for
    PASCAL-Context). Counts are summed over the split (ODS), taken at each image's best
    threshold (OIS), and turned into SEISM's interpolated average precision (AP).
    :mod:`.boundary_protocol` lists each step with the reference file it follows; the golden
    fixtures in ``tests/fixtures/seism`` hold the original code's outputs that it is tested on.

    Images are scored in worker processes as they arrive, so scoring overlaps the model's
    forward passes; results are one small count array per image and gather across ranks. The
    workers are spawned, so a script that evaluates must keep its top-level code under
    ``if __name__ == "__main__":`` (the tools do), the usual rule for spawned processes.

    ``mode='fast'`` is meant for validation during training: 5 of the thresholds (0.1, 0.3,
    ..., 0.9). Its keys carry an ``_approx`` suffix so that it is never mistaken for the
    published figure.

    Args:
        max_dist: matching tolerance as a fraction of the image diagonal.
        mode: ``'full'`` (the published protocol) or ``'fast'`` (approximate, see above).
        thresholds: increasing thresholds in (0, 1); default SEISM's HED list (full) or the
            five of the fast mode.
        gt_format: how the ground truth is read. ``'segmentation'`` (SEISM's reading, and the
            default): it is a label map whose boundaries ``seg2bmap`` finds, as SEISM does with
            the NYUD-v2 edge PNG; ``'boundary'``: it already is a one-pixel boundary map
            (PASCAL-Context's ``seg2bmap(LabelMap)``), thinned only.
        nproc: worker processes; default the CPU count divided by the number of ranks; 0 scores
            in the calling process (for debugging).
        save_dir: if set, every prediction is also written as ``<save_dir>/<name>.png``, the
            8-bit map the MATLAB SEISM tool reads (names from ``meta['name']``).
        ignore_index: ground-truth value of pixels that are not scored (SEISM has none; such
            pixels are removed from both maps before suppression).
        task: which key of the samples' ``pred``/``gt`` to read.
        collect_device: device for gathering results across ranks.
        prefix: metric-name prefix for :meth:`evaluate`; default the task name.

    A ``uint8`` prediction is taken as the PNG itself (for maps saved by other code).

    Returns (from ``compute_metrics``, percentages except the threshold): ``odsF``, ``oisF``,
    ``AP``, ``odsP``, ``odsR``, ``ods_threshold`` (each with ``_approx`` in fast mode).
    """

    def __init__(
        self,
        max_dist: float = 0.011,
        mode: str = "full",
        thresholds: Sequence[float] | None = None,
        gt_format: str = "segmentation",
        nproc: int | None = None,
        save_dir: str | None = None,
        ignore_index: int = 255,
        task: str = "edge",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(task=task, collect_device=collect_device, prefix=prefix)
        if mode not in ("full", "fast"):
            raise ValueError(f"task {task!r}: mode must be 'full' or 'fast', got {mode!r}")
        if not 0 < float(max_dist) < 1:
            raise ValueError(
                f"task {task!r}: max_dist is a fraction of the image diagonal, in (0, 1); got "
                f"{max_dist!r}"
            )
        if gt_format not in protocol.GT_FORMATS:
            raise ValueError(
                f"task {task!r}: gt_format must be one of {protocol.GT_FORMATS}, got {gt_format!r}"
            )
        if nproc is not None and (
            isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 0
        ):
            raise ValueError(f"task {task!r}: nproc must be an integer >= 0, got {nproc!r}")
        self.mode = mode
        self.max_dist = float(max_dist)
        default = protocol.HED_THRESHOLDS if mode == "full" else protocol.FAST_THRESHOLDS
        try:
            self.thresholds = protocol.check_thresholds(
                default if thresholds is None else thresholds
            )
        except ValueError as err:
            raise ValueError(f"task {task!r}: {err}") from None
        self.gt_format = gt_format
        self.nproc = nproc
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.ignore_index = ignore_index

    @property
    def processes(self) -> int:
        """Worker processes this metric uses (0: in the calling process)."""
        if self.nproc is not None:
            return self.nproc
        return max(1, (os.cpu_count() or 1) // max(1, get_world_size()))

    def _arguments(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        """Check one image and build the arguments of its scoring job."""
        pred = as_single_channel(pred, self.task, "the prediction")
        gt = as_single_channel(gt, self.task, "the ground truth")
        check_same_shape(pred, gt, self.task)
        if pred.dtype == np.uint8:  # never modified downstream: no copy needed
            png = pred
        else:
            prob = pred.astype(np.float64)
            check_probabilities(prob, self.task)
            # The protocol starts from the 8-bit map: truncate here, send a quarter of the bytes.
            png = protocol.to_png(prob)
        valid, edges = binary_labels(gt, self.ignore_index, self.task)
        valid = None if valid.all() else valid
        return png, edges, valid, self.thresholds, self.max_dist, self.gt_format

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        """Check each sample, optionally save its PNG, and queue it for scoring."""
        for sample in data_samples:
            args = self._arguments(*sample_pair(sample, self.task))
            if self.save_dir is not None:
                self._save(args[0], sample)
            if self.processes == 0:
                self.results.append(_score_image(*args))
            else:
                self.results.append(worker_pool(self.processes).submit(_score_image, *args))

    def sample_stats(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """The 4×T counts of one image, computed in the calling process."""
        return _score_image(*self._arguments(pred, gt))

    def _save(self, prob_u8: np.ndarray, sample: Mapping) -> None:
        name = (sample.get("meta") or {}).get("name")
        if not name:
            raise KeyError(
                f"task {self.task!r}: save_dir is set, so every sample needs meta['name'] to name "
                f"its PNG; this sample's meta is {sample.get('meta')!r}"
            )
        ok, png = cv2.imencode(".png", prob_u8)
        if not ok:  # pragma: no cover - OpenCV failing to encode a uint8 image
            raise RuntimeError(f"could not encode the boundary map of {name!r} as PNG")
        atomic_write_bytes(png.tobytes(), output_path(self.save_dir, str(name), ".png"))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """ODS, OIS and AP over the split (see :func:`.boundary_protocol.summarize`)."""
        if not results:
            raise ValueError(f"task {self.task!r}: no image was scored")
        scores = protocol.summarize(resolve_pending(list(results)), self.thresholds)
        out = {
            "odsF": scores["odsF"] * 100,
            "oisF": scores["oisF"] * 100,
            "AP": scores["AP"] * 100,
            "odsP": scores["odsP"] * 100,
            "odsR": scores["odsR"] * 100,
            "ods_threshold": scores["ods_threshold"],
        }
        if self.mode == "fast":
            out = {f"{k}_approx": v for k, v in out.items()}
        return out

    def __repr__(self) -> str:
        return (
            f"BoundaryMetric(task={self.task!r}, mode={self.mode!r}, max_dist={self.max_dist}, "
            f"thresholds={len(self.thresholds)})"
        )
