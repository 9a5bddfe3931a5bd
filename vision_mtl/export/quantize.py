"""Static INT8 quantization of an exported model, in the form TensorRT builds.

ONNX Runtime's ``quantize_static`` writes QuantizeLinear/DequantizeLinear (QDQ) pairs whose
scales TensorRT uses directly (explicit quantization, no calibrator on the device). Its
defaults do not suit TensorRT, so this sets:

* signed INT8 activations and weights, **symmetric** (TensorRT requires zero points of 0);
* per-channel weight scales (TensorRT accepts per-channel scales on weights only);
* no bias quantization (TensorRT refuses INT32 dequantization; biases stay fp32);
* the nodes that write the task outputs and products of two activations stay fp32
  (:func:`fp32_nodes`).

One file serves both runtimes. TensorRT builds it as it is. ONNX Runtime's x86 CPU kernels
multiply unsigned activations by signed weights (the VNNI instructions' operand types), so
:func:`vision_mtl.runtime.onnx_model.unsigned_activations` re-encodes every activation pair as
UINT8 with zero point 128 when a CPU session is created: ``q + 128`` with the same scale, which dequantizes to exactly
the same values, so the arithmetic is the symmetric graph's.

Calibration feeds images of the config's training set through the deployment's own
preprocessing; activation ranges are min/max, percentile or entropy (``method``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from vision_mtl.export.runtime import Deployment
from vision_mtl.export.validate import DIGEST_KEY, file_sha256, load_onnx, sidecar_bytes

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


class ImageReader(CalibrationDataReader):
    """Feeds preprocessed images, one per batch, to ONNX Runtime's calibrator."""

    def __init__(self, deployment: Deployment, images: list[np.ndarray]) -> None:
        self.name = deployment.sidecar["input"]["name"]
        self.batches = [deployment.preprocess([image])[0] for image in images]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


#: operators that pass a tensor on without arithmetic that would change its need for precision
PASS_THROUGH = frozenset(
    "Cast Flatten Identity Reshape Resize Slice Squeeze Transpose Unsqueeze Upsample".split()
)


def output_writers(model: onnx.ModelProto) -> set[str]:
    """The quantizable nodes whose result reaches a graph output through pass-through
    operators only (a head's last convolution, then its cast to fp32 and its upsampling)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    writers = set()
    for output in model.graph.output:
        node = producers.get(output.name)
        while node is not None and node.op_type in PASS_THROUGH and node.input:
            node = producers.get(node.input[0])
        if node is not None and node.op_type in QUANTIZED_OPS:
            writers.add(node.name)
    return writers


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """The quantizable nodes kept in fp32 by default, by name.

    * the nodes that write a task output (:func:`output_writers`: the predictions in metres,
      normal components, logits), whether or not they are upsampled to the canvas after;
    * products of two activations (MatMul without a constant operand: attention's Q·Kᵀ and
      A·V, linear attention's Kᵀ·V): their ranges depend on the input, and one per-tensor scale
      calibrated over a few images rounds them badly (4–8 dB SQNR measured on EfficientViT's
      linear attention, against about 30 dB for convolutions).
    """
    writers = output_writers(model)
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    keep = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        writes_output = node.name in writers
        activation_product = node.op_type == "MatMul" and not any(
            i in constants for i in node.input
        )
        if writes_output or activation_product:
            keep.append(node.name)
    return keep


def check_calibration(deployment: Deployment, images: list[np.ndarray]) -> onnx.ModelProto:
    """Refuse an empty image list, a truncated fp32 graph or an image that does not fit the
    canvas, before a quantizer runs; returns the fp32 graph."""
    if not images:
        raise ValueError("quantization needs at least one calibration image")
    model = load_onnx(deployment.onnx_path)  # one clear error for a truncated file
    for i, image in enumerate(images):
        deployment.check_image(image, f"calibration image {i}")
    return model


def quantize_int8(
    deployment: Deployment,
    images: list[np.ndarray],
    out_path: str | os.PathLike,
    method: str = "percentile",
    op_types: tuple[str, ...] = QUANTIZED_OPS,
    keep_fp32: list[str] | None = None,
) -> Path:
    """Write a symmetric INT8 QDQ copy of the deployment's graph to ``out_path`` (atomically).

    Args:
        deployment: the exported fp32 model.
        images: calibration images (H×W×3 uint8 RGB).
        out_path: the ``.onnx`` file to write.
        method: ``minmax``, ``percentile`` (99.999th, robust to a few outliers) or ``entropy``.
        op_types: operators whose inputs and outputs are quantized.
        keep_fp32: node names left in fp32; default: :func:`fp32_nodes`.

    Raises:
        ValueError: an unknown method or no calibration image.
        DeploymentError: the fp32 file is not a complete ONNX model, or an image does not fit
            the canvas.
    """
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} is not one of {sorted(METHODS)}")
    check_calibration(deployment, images)
    out_path = Path(out_path)
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=out_path.parent))
    try:
        prepared = work / "prepared.onnx"
        quant_pre_process(str(deployment.onnx_path), str(prepared), skip_symbolic_shape=True)
        if keep_fp32 is None:
            keep_fp32 = fp32_nodes(onnx.load(str(prepared)))
        staged = work / out_path.name
        quantize_static(
            str(prepared),
            str(staged),
            ImageReader(deployment, images),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(keep_fp32),
            calibrate_method=METHODS[method],
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
            },
        )
        extra = sorted(p.name for p in work.iterdir() if p.name not in (staged.name, prepared.name))
        if extra:
            raise RuntimeError(f"quantization wrote unexpected files {extra}")
        os.replace(staged, out_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_path


def write_int8_sidecar(
    fp32: Deployment,
    int8_path: Path,
    method: str,
    samples: int,
    split: str = "train",
    quantizer: str = "ort",
) -> Path:
    """The fp32 sidecar for ``int8_path``, plus how it was quantized; sealed, written atomically."""
    from vision_mtl.utils import atomic_write_bytes

    sidecar = dict(fp32.sidecar, onnx=int8_path.name, onnx_sha256=file_sha256(int8_path))
    sidecar.pop(DIGEST_KEY, None)  # the fp32 digest; sidecar_bytes seals the new content
    sidecar["quantization"] = dict(
        format="QDQ",
        quantizer=quantizer,
        weights="int8 symmetric per-channel",
        activations="int8 symmetric per-tensor",
        fp32_nodes=unquantized_nodes(onnx.load(str(int8_path))),
        calibration=dict(method=method, samples=samples, split=split),
        fp32_onnx_sha256=fp32.sidecar["onnx_sha256"],
    )
    path = int8_path.with_suffix(".json")
    atomic_write_bytes(sidecar_bytes(sidecar), path)
    return path


def unquantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv/MatMul/Gemm nodes of a QDQ graph whose input is not dequantized."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS and n.input[0] not in dequantized
    ]
