"""Static INT8 quantization with NVIDIA Model Optimizer's ONNX quantizer (Q/DQ placed for TensorRT).

:func:`quantize_int8_modelopt` has the contract of :func:`vision_mtl.export.quantize.quantize_int8`
(same inputs, same checks first, same staging beside ``out_path`` and atomic rename, the same
default fp32 nodes) but lets ModelOpt (``nvidia-modelopt``, ``modelopt.onnx.quantization``) choose
where Q/DQ pairs go: on the inputs of the operators TensorRT fuses (Conv, and residual Add,
pooling and Resize inputs it can run in INT8), never on their outputs, calibrated on the CPU.

ModelOpt's output is then brought to the form the rest of the package expects:

* weights: ModelOpt writes fp32 weights behind a QuantizeLinear; they are quantized here and stored
  as INT8 initializers read by the DequantizeLinear, as ONNX Runtime's quantizer writes them
  (TensorRT folds both forms; :func:`~vision_mtl.runtime.onnx_model.unsigned_activations` re-encodes
  only activations, and recognises a weight by its INT8 initializer);
* opset: ModelOpt raises every INT8 graph to opset 19 (for fp16 scales, unused here), which
  TensorRT 8.6 does not parse; it is told to keep the fp32 model's opset (:func:`_keep_opset`).
  (``onnx.version_converter`` cannot take such a graph back down: it has no Pad 19→17 adapter.)

ModelOpt patches onnxruntime's quantization classes and operator registries when it runs; they
are restored afterwards, so ONNX Runtime's quantizer behaves the same later in the process.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from vision_mtl.export.quantize import check_calibration, fp32_nodes
from vision_mtl.export.runtime import Deployment

#: our method names → ModelOpt's (it has no percentile calibration)
METHODS = {"minmax": "max", "entropy": "entropy"}
#: ModelOpt 0.47's own ``[onnx]`` extra pins onnx 1.21 and adds onnxruntime-gpu over
#: onnxruntime; vision_mtl's ``modelopt`` extra installs it with onnx and onnxruntime kept
INSTALL_HINT = (
    'pip install -e ".[modelopt]" in the vision_mtl checkout (or: pip install '
    "nvidia-modelopt==0.47.0 onnx-graphsurgeon onnxslim onnxscript lief)"
)


def import_modelopt_quantize():
    """ModelOpt's ONNX ``quantize``, or an ImportError naming the package and how to install it."""
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as err:  # modelopt itself, or one of its ONNX dependencies, is missing
        raise ImportError(
            f"the ModelOpt quantizer needs the nvidia-modelopt package and its ONNX dependencies "
            f"({err}); install them with: {INSTALL_HINT}"
        ) from None
    return quantize


@contextlib.contextmanager
def _keep_opset(opset: int):
    """Let ModelOpt quantize INT8 at ``opset`` instead of raising the graph to opset 19.

    nvidia-modelopt 0.47.0 (private: ``modelopt.onnx.quantization.quantize``'s module constant
    ``QDQ_PRECISION_MIN_OPSET``) converts any INT8 graph below opset 19, the first with fp16 Q/DQ
    scales; ours are fp32, and TensorRT 8.6 parses opset 17 at most. Where the constant is gone
    (another version) nothing is patched, and the opset check after quantizing names the problem.
    """
    module = importlib.import_module("modelopt.onnx.quantization.quantize")
    table = getattr(module, "QDQ_PRECISION_MIN_OPSET", None)
    if not isinstance(table, dict) or "int8" not in table:
        yield
        return
    module.QDQ_PRECISION_MIN_OPSET = dict(table, int8=min(opset, table["int8"]))
    try:
        yield
    finally:
        module.QDQ_PRECISION_MIN_OPSET = table


@contextlib.contextmanager
def _isolated_modelopt(work: Path):
    """Run ModelOpt with its temporary files in ``work`` and undo its patches to onnxruntime.

    nvidia-modelopt 0.47.0 (``modelopt.onnx.quantization.ort_utils.configure_ort``) replaces
    methods of onnxruntime's calibrators and quantizers and deletes entries of its QDQ operator
    registries for the whole process; every attribute of those modules and classes and every
    registry entry is put back as it was.
    """
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer, registry

    modules = (calibrate, base_quantizer, qdq_quantizer)
    owners = list(modules) + [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__
    ]
    saved = [(owner, dict(vars(owner))) for owner in owners]
    tables = (registry.QDQRegistry, registry.QLinearOpsRegistry, registry.IntegerOpsRegistry)
    saved_tables = [(table, dict(table)) for table in tables]
    # ModelOpt asks NVML for a GPU count and logs an ERROR when there is no NVIDIA driver
    notice, tempdir = (lambda r: "Failed to get GPU count" not in r.getMessage()), tempfile.tempdir
    logging.getLogger("modelopt.onnx").addFilter(notice)
    tempfile.tempdir = str(work)  # ModelOpt's own mkstemp/TemporaryDirectory files land here
    try:
        yield
    finally:
        tempfile.tempdir = tempdir
        logging.getLogger("modelopt.onnx").removeFilter(notice)
        for owner, attributes in saved:
            for name in set(vars(owner)) - set(attributes):
                delattr(owner, name)
            for name, value in attributes.items():
                if vars(owner).get(name) is not value:
                    setattr(owner, name, value)
        for table, entries in saved_tables:
            table.clear()
            table.update(entries)


def fold_weight_quantizers(model: onnx.ModelProto) -> int:
    """Replace each QuantizeLinear of a constant by its INT8 result, in place; return how many.

    ``saturate(round_half_even(w / scale) + zero_point)`` per ONNX QuantizeLinear, per channel
    along the node's ``axis``; the DequantizeLinear that read the Q output reads the initializer.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            continue
        weight = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]])
        if zero.dtype != np.int8:
            continue  # only INT8 is folded; check_graph names anything else
        if scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % weight.ndim
            shape = [1] * weight.ndim
            shape[axis] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        quantized = np.rint(weight / scale) + zero.astype(np.float32)
        quantized = np.clip(quantized, -128, 127).astype(np.int8)
        graph.initializer.append(numpy_helper.from_array(quantized, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    gone = {node.input[0] for node in folded} - used  # fp32 weights no other node reads
    kept = [i for i in graph.initializer if i.name not in gone]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(folded)


def _drop_quantized_types(model: onnx.ModelProto) -> None:
    """Forget the INT8 types ModelOpt recorded for Q outputs: ONNX Runtime would refuse them once
    :func:`~vision_mtl.runtime.onnx_model.unsigned_activations` made the activations UINT8."""
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    kept = [v for v in model.graph.value_info if v.name not in quantized]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def quantize_int8_modelopt(
    deployment: Deployment,
    images: list[np.ndarray],
    out_path: str | os.PathLike,
    method: str = "entropy",
    keep_fp32: list[str] | None = None,
) -> Path:
    """Write a symmetric INT8 QDQ copy of the deployment's graph, placed by ModelOpt (atomically).

    Args:
        deployment: the exported fp32 model.
        images: calibration images (H×W×3 uint8 RGB).
        out_path: the ``.onnx`` file to write.
        method: ``minmax`` (ModelOpt's ``max``) or ``entropy``.
        keep_fp32: node names left in fp32; default: :func:`~vision_mtl.export.quantize.fp32_nodes`.

    Raises:
        ValueError: an unknown method or no calibration image.
        DeploymentError: the fp32 file is not a complete ONNX model, or an image does not fit
            the canvas.
        ImportError: nvidia-modelopt or one of its ONNX dependencies is not installed.
        RuntimeError: ModelOpt changed the graph's opset (a version other than 0.47.0).
    """
    if method not in METHODS:
        raise ValueError(
            f"calibration method {method!r} is not one of {sorted(METHODS)} "
            "(ModelOpt's quantizer has no percentile calibration)"
        )
    original = check_calibration(deployment, images)
    quantize = import_modelopt_quantize()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    work = Path(tempfile.mkdtemp(prefix=".quantize-modelopt-", dir=out_path.parent))
    try:
        prepared, raw, staged = work / "prepared.onnx", work / "modelopt.onnx", work / out_path.name
        # the graph ONNX Runtime's quantizer starts from too: constants folded, Identity removed
        quant_pre_process(str(deployment.onnx_path), str(prepared), skip_symbolic_shape=True)
        if keep_fp32 is None:
            keep_fp32 = fp32_nodes(onnx.load(str(prepared)))
        batch = np.concatenate([deployment.preprocess([image])[0] for image in images])
        with _isolated_modelopt(work), _keep_opset(_opset(original)):
            quantize(
                str(prepared),
                quantize_mode="int8",
                calibration_data={deployment.sidecar["input"]["name"]: batch},
                calibration_method=METHODS[method],
                calibration_eps=["cpu"],
                high_precision_dtype="fp32",  # ModelOpt's default converts the graph to fp16
                nodes_to_exclude=[re.escape(name) + "$" for name in keep_fp32],  # regexes
                output_path=str(raw),
                log_level="WARNING",
            )
        model = onnx.load(str(raw))
        if _opset(model) != _opset(original):
            raise RuntimeError(
                f"ModelOpt raised the INT8 graph of {str(deployment.onnx_path)!r} to opset "
                f"{_opset(model)} (the fp32 graph's is {_opset(original)}; TensorRT 8.6 parses "
                "17 at most): this nvidia-modelopt version is not supported, 0.47.0 is"
            )
        fold_weight_quantizers(model)
        _drop_quantized_types(model)
        onnx.save(model, str(staged))
        expected = {prepared.name, raw.name, staged.name}
        extra = sorted(p.name for p in work.iterdir() if p.name not in expected)
        if extra:
            raise RuntimeError(f"ModelOpt's quantization wrote unexpected files {extra}")
        os.replace(staged, out_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_path
