"""Quantization-aware fine-tuning, from a trained or pruned checkpoint to a verified Q/DQ graph.

:func:`qat_workflow` is what ``tools/qat.py`` runs::

    from vision_mtl.workflows.qat import QatSettings, qat_workflow

    report = qat_workflow("configs/...py", "work_dirs/.../iter_800.pth",
                          QatSettings(out="work_dirs/qat", iters=200))
    report["delta"]["qat"]["multitask/delta_m"]

The steps, each written only into ``out``:

1. the checkpoint is exported as it is (``fp32/model.onnx``, checked for TensorRT and against
   PyTorch) and quantized after training (``fp32/model_int8.onnx``): the two baselines;
2. a multi-branch backbone is folded (QAT trains the form that ships); every Conv/Linear input
   is calibrated on training images through the export's preprocessing
   (:func:`vision_mtl.compress.qat.calibrate`) and the model is fine-tuned with fake
   quantization for ``iters`` iterations with the config's own schedule, scaled to that length,
   at ``lr_scale`` times its learning rate (``work/``; its checkpoints carry the QAT record, so
   ``tools/test.py`` and ``tools/export.py`` rebuild the quantized model from them);
3. the fine-tuned model is exported as a Q/DQ graph (``qat/model.onnx``) through the same
   TensorRT check and ONNX Runtime parity as every export, compared as a quantized graph
   (outputs within ``parity_rtol`` of their range, metrics within 0.5 points of Δm:
   :func:`vision_mtl.export.parity.check_parity`);
4. fp32, post-training INT8 and QAT INT8 are scored with ONNX Runtime on the test set and timed
   interleaved; ``qat_report.json`` holds every metric, Δm of each INT8 model against fp32 and
   the latencies.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vision_mtl.apis.inference import init_model
from vision_mtl.apis.runner import load_config
from vision_mtl.compress.folding import fold_backbone
from vision_mtl.compress.pruning import PruningError
from vision_mtl.compress.qat import METHODS, calibrate, make_record, output_writers
from vision_mtl.export import OrtRunner
from vision_mtl.export.int8_comparison import (
    check_evaluated_tasks,
    check_model_tasks,
    checked_samples,
    score_and_time,
)
from vision_mtl.export.parity import build_metric, sample_image
from vision_mtl.export.verified import export_verified, qat_section, quantize_verified
from vision_mtl.input_size import config_input_size
from vision_mtl.utils import write_json
from vision_mtl.workflows.pruning_steps import (
    check_finetune,
    finetune,
    finetune_config,
    save_pruned_checkpoint,
)

#: the post-training baseline's calibration for each QAT calibration method (its quantizer's name)
PTQ_METHODS = {"max": "minmax", "percentile": "percentile"}


class QatSettingsError(ValueError):
    """A setting, the config or the checkpoint does not allow the run (nothing was written)."""


@dataclass
class QatSettings:
    """``tools/qat.py``'s flags: each field is the flag of the same name."""

    out: str | os.PathLike
    iters: int = 200
    lr_scale: float = 0.1
    calib_samples: int = 64
    method: str = "percentile"
    eval_samples: int | None = None
    shape: tuple[int, int] | None = None
    parity_samples: int = 8
    parity_rtol: float = 0.05
    threads: int | None = None
    runs: int = 50


def check_settings(settings: QatSettings) -> Path:
    """Every setting, and an ``out`` that is new or empty; returns ``out`` as a path."""
    for key, minimum in (("iters", 1), ("calib_samples", 1), ("parity_samples", 1), ("runs", 1)):
        value = getattr(settings, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise QatSettingsError(f"--{key.replace('_', '-')} must be an integer >= {minimum}")
    if settings.eval_samples is not None and settings.eval_samples < 1:
        raise QatSettingsError("--eval-samples must be >= 1")
    if not settings.lr_scale > 0:
        raise QatSettingsError(f"--lr-scale must be > 0, got {settings.lr_scale!r}")
    if not 0 < settings.parity_rtol < 1:
        raise QatSettingsError(f"--parity-rtol must be in (0, 1), got {settings.parity_rtol!r}")
    if settings.method not in METHODS:
        raise QatSettingsError(f"--method {settings.method!r} is not one of {list(METHODS)}")
    out = Path(settings.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QatSettingsError(f"--out {str(out)!r} exists and is not an empty directory")
    return out


def scale_learning_rate(cfg, factor: float) -> None:
    """Multiply the config's optimizer learning rate by ``factor`` (in place)."""
    optimizer = cfg.optim_wrapper.get("optimizer") or {}
    lr = optimizer.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise QatSettingsError(
            f"--lr-scale scales the config's optim_wrapper.optimizer.lr, which is {lr!r}, not a "
            "positive number"
        )
    optimizer["lr"] = lr * factor


def qat_workflow(
    config: str,
    checkpoint: str | os.PathLike,
    settings: QatSettings,
    cfg_options: dict | None = None,
) -> dict:
    """Fine-tune ``checkpoint`` with fake quantization and export it; returns the report.

    Raises:
        QatSettingsError: a bad setting, a config that cannot fine-tune, a checkpoint that is
            already quantization-aware (before anything is written).
        ExportCheckError: an export fails the TensorRT check or parity.
    """
    out = check_settings(settings)
    cfg = load_config(config, cfg_options)
    scale_learning_rate(copy.deepcopy(cfg), settings.lr_scale)  # refuses before any work
    try:
        check_finetune(cfg, settings.iters)
    except PruningError as err:
        raise QatSettingsError(str(err)) from None
    canvas = config_input_size(cfg, settings.shape, config)
    model = init_model(cfg, checkpoint, device="cpu")
    if model.qat_record is not None:
        raise QatSettingsError(f"checkpoint {str(checkpoint)!r} is already quantization-aware")

    # 1. the baselines: fp32 as trained, and post-training INT8 of it
    fp32 = export_verified(
        model, out / "fp32", canvas, parity_samples=settings.parity_samples
    ).deployment
    check_model_tasks(cfg, config, fp32)
    samples, metainfo = checked_samples(cfg, config, fp32, "test", settings.eval_samples or 10**9)
    check_evaluated_tasks(build_metric(cfg, metainfo, "test"), config, fp32)
    calibration, _ = checked_samples(cfg, config, fp32, "train", settings.calib_samples)
    images = [sample_image(s) for s in calibration]
    ptq = quantize_verified(fp32, images, PTQ_METHODS[settings.method])

    # 2. calibrate the folded model on the same images, then fine-tune it fake-quantized
    folded = fold_backbone(model)
    batches = [
        torch.from_numpy(fp32.preprocess(images[i : i + 8])[0]) for i in range(0, len(images), 8)
    ]
    keep = output_writers(model, batches[0])
    record = make_record(
        calibrate(model, batches, settings.method, keep), keep, settings.method, folded > 0
    )
    start = save_pruned_checkpoint(
        model,
        model.pruning_record,
        out / "qat_start.pth",
        getattr(model, "dataset_meta", None),
        qat=record,
    )
    tuned = finetune_config(cfg, model.pruning_record, start, settings.iters, out / "work")
    tuned.model.qat = record
    scale_learning_rate(tuned, settings.lr_scale)
    quantized = finetune(tuned, getattr(model, "dataset_meta", None)).cpu().eval()

    # 3. the Q/DQ graph, through the same checks as every export
    section = qat_section(record, iters=settings.iters, lr_scale=settings.lr_scale)
    section["calibration"]["samples"] = len(images)
    qat = export_verified(
        quantized,
        out / "qat",
        canvas,
        parity_samples=settings.parity_samples,
        atol=settings.parity_rtol,
        quantization=section,
    ).deployment

    # 4. score and time all three with ONNX Runtime
    runners = {
        name: OrtRunner(d, providers=["CPUExecutionProvider"], threads=settings.threads)
        for name, d in (("fp32", fp32), ("ptq", ptq), ("qat", qat))
    }
    scored = score_and_time(runners, samples, metainfo, cfg, config, 10, settings.runs)
    report = dict(
        config=config,
        checkpoint=str(checkpoint),
        iters=settings.iters,
        lr_scale=settings.lr_scale,
        calibration=dict(method=settings.method, samples=len(images), split="train"),
        folded_blocks=folded,
        fp32_layers=record["fp32_layers"],
        eval_samples=len(samples),
        files={name: str(r.deployment.onnx_path) for name, r in runners.items()},
        **scored,
    )
    write_json(report, out / "qat_report.json")
    return report
