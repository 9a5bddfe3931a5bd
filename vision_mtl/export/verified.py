"""Export and quantize with every check, publishing files only when all checks pass.

Both functions work in a hidden staging directory beside the destination and move the finished
pair (graph, the export's reference inputs, then sidecar) into place with atomic renames, so a
failed check, an exception or an interrupted run never leaves a partial or unchecked file where a
runtime would find it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from vision_mtl.export.modelopt_quantize import METHODS as MODELOPT_METHODS
from vision_mtl.export.modelopt_quantize import import_modelopt_quantize, quantize_int8_modelopt
from vision_mtl.export.onnx_export import (
    Exported,
    add_sidecar_section,
    attach_reference,
    check_export_name,
    check_padding,
    export_onnx,
    publish,
    staging_dir,
)
from vision_mtl.export.parity import ParityReport, check_parity, load_samples, sample_image
from vision_mtl.export.quantize import METHODS as QUANTIZE_METHODS
from vision_mtl.export.quantize import quantize_int8, unquantized_nodes, write_int8_sidecar
from vision_mtl.export.reparam import FoldError, check_folded, fold_branches
from vision_mtl.export.runtime import Deployment, load_deployment
from vision_mtl.export.tensorrt_check import check_graph, format_problems

TRT_VERSIONS = ("8.6", "10.3")
#: the INT8 quantizers: name → (calibration methods, default method)
QUANTIZERS = {
    "ort": (tuple(QUANTIZE_METHODS), "percentile"),
    "modelopt": (tuple(MODELOPT_METHODS), "entropy"),
}


def check_quantizer(quantizer: str, method: str | None) -> str:
    """The calibration method to use; a ValueError naming the quantizer or method if unknown,
    an ImportError with the install command if the quantizer's package is missing."""
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer {quantizer!r} is not one of {sorted(QUANTIZERS)}")
    if quantizer == "modelopt":
        import_modelopt_quantize()  # missing: an ImportError saying how to install it, now
    methods, default = QUANTIZERS[quantizer]
    if method is None:
        return default
    if method not in methods:
        raise ValueError(
            f"calibration method {method!r} is not one of the {quantizer} quantizer's "
            f"{sorted(methods)}"
        )
    return method


#: most parity images kept as the export's reference inputs (each is 3×H×W float32 in the file)
REFERENCE_SAMPLES = 4


class ExportCheckError(RuntimeError):
    """A graph failed the TensorRT check or parity; the message names the node or task."""


@dataclass
class VerifiedExport:
    """A published, checked pair and the parity figures that admitted it."""

    deployment: Deployment
    parity: ParityReport
    simplified: dict | None
    #: backbone blocks folded by structural reparameterization before export (0: none)
    folded_blocks: int = 0
    #: largest difference between the folded and the multi-branch model's outputs
    fold_difference: float | None = None


def export_verified(
    model: nn.Module,
    out_dir: str | os.PathLike,
    canvas: tuple[int, int],
    opset: int = 17,
    max_batch: int | None = None,
    name: str = "model",
    simplify: bool = False,
    trt_versions: Sequence[str] = TRT_VERSIONS,
    parity_samples: int = 8,
    atol: float = 1e-4,
    quantization: dict | None = None,
) -> VerifiedExport:
    """Export ``model``, check it for TensorRT and against PyTorch, then publish to ``out_dir``.

    A backbone with multi-branch blocks (MobileOne, RepViT, FastViT, RepGhost) is exported
    folded (:mod:`vision_mtl.export.reparam`), after the folded copy is shown to match the
    multi-branch model within ``atol``.

    ``quantization`` describes a quantization-aware model's Q/DQ graph (by default, for a
    model with a QAT record, :func:`qat_section`); it becomes the
    sidecar's ``quantization`` section, as for a post-training INT8 pair, and parity compares
    as for a quantized graph (``atol`` a fraction of each output's range, metrics by Δm;
    :func:`~vision_mtl.export.parity.check_parity`).

    Besides the graph and its sidecar, ``<name>_reference.npz`` holds the first
    ``min(parity_samples, REFERENCE_SAMPLES)`` parity images, preprocessed, for checks on the
    device (:mod:`vision_mtl.runtime.reference`).

    Raises:
        ExportCheckError: the graph would not build in a TensorRT version, or ONNX Runtime's
            outputs or metrics differ from PyTorch's; nothing is written to ``out_dir``.
        ValueError: ``parity_samples`` is below 1, ``name`` is not a plain file stem, or the
            model pads its inputs around the image, which the runtimes do not (before any work).
    """
    if quantization is None and getattr(model, "qat_record", None) is not None:
        quantization = qat_section(model.qat_record)
    if not isinstance(parity_samples, int) or parity_samples < 1:
        raise ValueError(f"parity_samples must be an integer >= 1, got {parity_samples!r}")
    check_export_name(name)
    check_padding(model)  # before any work
    folded, blocks = fold_branches(model)
    fold_difference = None
    if blocks:  # multi-branch blocks ship folded, once proven equal
        try:
            fold_difference = check_folded(model, folded, canvas, atol)
        except FoldError as err:
            raise ExportCheckError(str(err)) from err
        model = folded
    stage = staging_dir(out_dir)
    try:
        exported = export_onnx(model, stage, canvas, opset, max_batch, name, simplify)
        profiles = {"image": {0: (1, 1, max_batch)}} if max_batch else None
        problems = check_graph(str(exported.onnx_path), trt_versions, profiles)
        if problems:
            raise ExportCheckError(
                f"the exported graph would not build in TensorRT {', '.join(trt_versions)}:\n"
                + format_problems(problems)
            )
        report = check_parity(
            model,
            load_deployment(exported.sidecar_path),
            model.cfg,
            parity_samples,
            atol,
            quantized=quantization is not None,
        )
        if not report.ok:
            raise ExportCheckError("ONNX parity failed:\n  " + "\n  ".join(report.failures))
        samples, _ = load_samples(model.cfg, "val", min(parity_samples, REFERENCE_SAMPLES))
        exported = attach_reference(exported, [sample_image(s) for s in samples])
        if quantization is not None:
            section = dict(
                quantization, fp32_nodes=unquantized_nodes(onnx.load(exported.onnx_path))
            )
            exported = add_sidecar_section(exported, "quantization", section)
        _, sidecar_path = publish(exported, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return VerifiedExport(
        load_deployment(sidecar_path),
        report,
        exported.sidecar["simplified"],
        folded_blocks=blocks,
        fold_difference=fold_difference,
    )


def qat_section(record: dict, **extra) -> dict:
    """The sidecar's ``quantization`` section for a quantization-aware model's Q/DQ graph."""
    return dict(
        format="QDQ",
        quantizer="qat",
        source="quantization-aware training (tools/qat.py)",
        weights=record["weights"],
        activations=record["activations"],
        calibration=dict(method=record["method"], split="train"),
        **extra,
    )


def quantize_verified(
    fp32: Deployment,
    images: list[np.ndarray],
    method: str | None = None,
    trt_versions: Sequence[str] = TRT_VERSIONS,
    before_publish: Callable[[Deployment], None] | None = None,
    quantizer: str = "ort",
) -> Deployment:
    """Write ``<stem>_int8.onnx`` and its sidecar beside ``fp32`` once the TensorRT check passes.

    Args:
        fp32: the exported fp32 model.
        images: calibration images.
        method: the calibration method (:data:`QUANTIZERS`; ``None``: the quantizer's default).
        trt_versions: TensorRT versions the INT8 graph must build in.
        before_publish: called with the staged INT8 deployment after the checks and before it
            is published (e.g. to evaluate it); if it raises, nothing is published.
        quantizer: ``ort`` (ONNX Runtime's static quantizer: Q/DQ on the inputs and outputs
            of every convolution, which ONNX Runtime's CPU kernels fuse into integer
            convolutions; the default) or ``modelopt`` (NVIDIA Model Optimizer's: Q/DQ on
            inputs only, as TensorRT fuses them; fewer roundings, but fp32 convolutions on
            ONNX Runtime's CPU; :mod:`vision_mtl.export.modelopt_quantize`).

    Raises:
        ExportCheckError: the INT8 graph would not build in a TensorRT version.
        ValueError: an unknown quantizer, or a method that quantizer does not have.
    """
    method = check_quantizer(quantizer, method)
    directory = fp32.onnx_path.parent
    stage = staging_dir(directory)
    try:
        staged = stage / f"{fp32.onnx_path.stem}_int8.onnx"
        if quantizer == "modelopt":
            quantize_int8_modelopt(fp32, images, staged, method)
        else:
            quantize_int8(fp32, images, staged, method)
        problems = check_graph(str(staged), trt_versions)
        if problems:
            raise ExportCheckError(
                f"the INT8 graph would not build in TensorRT:\n{format_problems(problems)}"
            )
        sidecar = write_int8_sidecar(fp32, staged, method, len(images), quantizer=quantizer)
        if before_publish is not None:
            before_publish(load_deployment(sidecar))
        _, sidecar_path = publish(Exported(staged, sidecar, {}), directory)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return load_deployment(Path(sidecar_path))
