"""Transforms that keep every task map aligned with the image, and the packing step.

A transform receives the sample dict (``image``, one array per task, ``meta``) and returns it.
Geometry is applied to every map with the task's own rules from :mod:`vision_mtl.tasks`: labels
are never interpolated, and a horizontal flip negates the flip channel of normals.
"""

from __future__ import annotations

import numpy as np
import torch

from vision_mtl.registry import FUNCTIONS, TRANSFORMS
from vision_mtl.tasks import TASKS, get_task


def _task_keys(sample: dict) -> list[str]:
    return [k for k in sample if k in TASKS]


def ignore_background_only(sample: dict) -> dict:
    """Mark a label map that holds only background (0) and ignore as ignored whole.

    For tasks whose TaskSpec sets ``ignore_background_only`` (human parts): an image or crop
    without a person says nothing about parts, as InvPT's ``AddIgnoreRegions`` rules (in its
    train and test transforms). PASCAL-Context applies the rule to whole images when it decodes
    them (its ``no_parts_value``); MultiTaskAugment applies it to every training crop.
    """
    for task in _task_keys(sample):
        spec = get_task(task)
        if spec.ignore_background_only:
            labels = sample[task]
            if np.all((labels == 0) | (labels == spec.ignore_value)):
                sample[task] = np.full_like(labels, spec.ignore_value)
    return sample


@TRANSFORMS.register_module()
class RandomHorizontalFlip:
    """Mirror the image and every task map with probability ``prob``.

    Args:
        prob: flip probability.
        seed: seed of the transform's own generator; ``None`` draws from numpy's global state
            (which mmengine seeds per worker).
    """

    def __init__(self, prob: float = 0.5, seed: int | None = None) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomHorizontalFlip prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def __call__(self, sample: dict) -> dict:
        draw = self.rng.random() if self.rng is not None else np.random.random()
        if draw >= self.prob:
            return sample
        sample["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
        for task in _task_keys(sample):
            value = np.ascontiguousarray(sample[task][:, ::-1])
            channel = get_task(task).flip_channel
            if channel is not None:
                value = value.copy()
                value[..., channel] = -value[..., channel]
            sample[task] = value
        sample.setdefault("meta", {})["flipped"] = True
        return sample


@TRANSFORMS.register_module()
class AddInputModality:
    """Copy a task map into the sample's extra model inputs (RGB-D: depth as an input).

    ``sample["extra_inputs"][name]`` becomes a float32 H×W copy of ``sample[task]``, so the
    target stays a target and the input is a separate map (a dataset with raw sensor depth, as
    NYUD-v2 in the MultiMAE paper, could put that here instead; SynthScenes and our NYUD loader
    give the dataset's depth map, the same map as the depth target). Place it **after** the
    geometric transforms (it copies the map as it is then) and before
    :class:`PackMultiTaskInputs`, which packs it as ``extra_inputs``; the data preprocessor
    standardizes it and appends it to ``inputs`` as a channel (``MultiMAEBackbone`` reads it).

    Args:
        task: the map to copy; only ``"depth"`` (the one input modality the preprocessor knows).
        name: its key among the extra inputs (``"depth"``).
    """

    def __init__(self, task: str = "depth", name: str = "depth") -> None:
        if task != "depth" or name != "depth":
            raise ValueError(
                f"AddInputModality supports task='depth', name='depth', got {task!r}, {name!r}"
            )
        self.task = task
        self.name = name

    def __call__(self, sample: dict) -> dict:
        if self.task not in sample:
            raise KeyError(
                f"sample {sample.get('meta', {}).get('name')!r} has no {self.task!r} map to use "
                "as an input; load the task in the dataset"
            )
        value = np.asarray(sample[self.task], dtype=np.float32)
        if value.ndim == 3 and value.shape[2] == 1:
            value = value[..., 0]
        sample.setdefault("extra_inputs", {})[self.name] = np.array(value, copy=True)
        return sample


@TRANSFORMS.register_module()
class PackMultiTaskInputs:
    """Turn a sample into tensors: ``inputs`` 3×H×W uint8, ``targets`` per task, ``meta``.

    Label targets become H×W int64; map targets C×H×W float32. ``meta`` gains ``img_shape``
    (after the transforms) and keeps ``ori_shape`` (the size predictions are scored at). Extra
    inputs (:class:`AddInputModality`) become ``extra_inputs``: name → 1×H×W float32.
    """

    def __call__(self, sample: dict) -> dict:
        image = sample["image"]
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"sample {sample.get('meta', {}).get('name')!r}: image must be H×W×3 uint8, "
                f"got shape {image.shape} dtype {image.dtype}"
            )
        targets = {}
        for task in _task_keys(sample):
            value = np.asarray(sample[task])
            if get_task(task).target_kind == "label":
                targets[task] = torch.from_numpy(value.astype(np.int64))
            else:
                if value.ndim == 2:
                    value = value[..., None]
                targets[task] = torch.from_numpy(
                    np.ascontiguousarray(value.transpose(2, 0, 1), dtype=np.float32)
                )
        meta = dict(sample.get("meta", {}))
        meta["img_shape"] = tuple(image.shape[:2])
        meta.setdefault("ori_shape", tuple(image.shape[:2]))
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        packed = dict(inputs=inputs, targets=targets, meta=meta)
        if sample.get("extra_inputs"):
            extra = {}
            for name, value in sample["extra_inputs"].items():
                if tuple(value.shape[:2]) != tuple(image.shape[:2]):
                    raise ValueError(
                        f"sample {meta.get('name')!r}: extra input {name!r} is "
                        f"{value.shape[:2]}, the image {image.shape[:2]}; put AddInputModality "
                        "after the geometric transforms"
                    )
                extra[name] = torch.from_numpy(np.ascontiguousarray(value, np.float32))[None]
            packed["extra_inputs"] = extra
        return packed


@FUNCTIONS.register_module()
def multitask_collate(batch: list[dict]) -> dict:
    """Gather packed samples into lists; padding and stacking happen in the data preprocessor.

    mmengine's ``pseudo_collate`` would transpose the ``meta`` dicts' tuples into lists of
    columns; this keeps one ``meta`` dict per image.
    """
    tasks = list(batch[0]["targets"]) if batch else []
    for sample in batch:
        if list(sample["targets"]) != tasks:
            raise ValueError(
                f"samples of one batch carry different tasks: {tasks} vs {list(sample['targets'])}"
            )
    collated = dict(
        inputs=[s["inputs"] for s in batch],
        targets={t: [s["targets"][t] for s in batch] for t in tasks},
        meta=[s["meta"] for s in batch],
    )
    extra = [list(s.get("extra_inputs") or {}) for s in batch]
    if any(extra):
        if any(names != extra[0] for names in extra):
            raise ValueError(f"samples of one batch carry different extra inputs: {extra}")
        collated["extra_inputs"] = {n: [s["extra_inputs"][n] for s in batch] for n in extra[0]}
    return collated
