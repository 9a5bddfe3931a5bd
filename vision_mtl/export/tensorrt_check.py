"""Will TensorRT parse this ONNX graph? A static check, run by export and quantization.

TensorRT is not installed where models are trained, so the export checks the graph against
what the onnx-tensorrt parser supports, node by node, and names what breaks it:

* every node's operator must be supported by each target TensorRT version, in the default
  ONNX domain (anything else needs a plugin), at an opset the version parses;
* ``Resize`` only with nearest or linear modes and a coordinate mode TensorRT implements (the
  parser's documentation lists no cubic mode; we refuse it rather than rely on undocumented
  behaviour);
* a dynamic input dimension needs an optimization-profile range (trtexec otherwise silently
  builds a batch-1 engine), and channel dimensions must be static;
* INT8 graphs: ``QuantizeLinear``/``DequantizeLinear`` must be symmetric INT8 (zero points
  present and all zero), with positive scales, per-channel scales on weights only, and no
  INT32 (bias) dequantization.

The operator tables: TensorRT 8.5 (JetPack 5.1) is the release/8.5-GA table of onnx-tensorrt's
``docs/operators.md``; TensorRT 8.6 (JetPack 6.0) is that table plus the operators its 8.6
changelog adds (LayerNormalization, GroupNormalization, IsInf); TensorRT 10.3 (JetPack 6.1/6.2)
is the 10.x table minus the operators the changelog adds after 10.3. Operators an opset-17
export of these models cannot emit are left out of all tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

_COMMON = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
    Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
    GreaterOrEqual GridSample GRU HardSigmoid HardSwish Identity If InstanceNormalization IsInf
    IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool
    LRN LSTM MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression
    NonZero Not OneHot Or Pad Pow PRelu QuantizeLinear Range Reciprocal ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
    Trilu Unsqueeze Upsample Where Xor""".split()
)
SUPPORTED_OPS: dict[str, frozenset[str]] = {
    "8.5": _COMMON - {"IsInf", "LayerNormalization"},
    "8.6": _COMMON | {"GroupNormalization"},
    "10.3": _COMMON | {"CastLike", "GroupNormalization"},
}
MAX_OPSET = {"8.5": 17, "8.6": 17, "10.3": 20}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
}
_STATIC_CHANNEL_OPS = {"Conv", "ConvTranspose"}


@dataclass(frozen=True)
class Problem:
    """One reason TensorRT would refuse the graph."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op_type}): {self.reason}"


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    """Every node, including those in If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's build-time constants: initializers and the outputs of ``Constant`` nodes
    (how the TorchScript exporter writes the scales of a quantization-aware model)."""
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            attrs = _attributes(node)
            if isinstance(attrs.get("value"), onnx.TensorProto):
                constants[node.output[0]] = numpy_helper.to_array(attrs["value"])
            elif "value_float" in attrs or "value_floats" in attrs:
                value = attrs.get("value_float", attrs.get("value_floats"))
                constants[node.output[0]] = np.asarray(value, np.float32)
            elif "value_int" in attrs or "value_ints" in attrs:
                value = attrs.get("value_int", attrs.get("value_ints"))
                constants[node.output[0]] = np.asarray(value, np.int64)
    return constants


def _is_weight(name: str, initializers: dict, producers: dict) -> bool:
    """A constant, or a constant passed through a QuantizeLinear (a Q/DQ pair on a weight)."""
    if name in initializers:
        return True
    node = producers.get(name)
    return node is not None and node.op_type == "QuantizeLinear" and node.input[0] in initializers


def _check_quantization(node, initializers, producers, problems: list[Problem]) -> None:
    name = node.name or node.output[0]
    if len(node.input) < 3 or not node.input[2]:
        problems.append(Problem(name, node.op_type, "zero point missing (TensorRT needs it)"))
        return
    scale, zero = initializers.get(node.input[1]), initializers.get(node.input[2])
    if scale is None or zero is None:
        problems.append(Problem(name, node.op_type, "scale and zero point must be constants"))
        return
    if zero.dtype != np.int8:
        problems.append(
            Problem(name, node.op_type, f"zero point is {zero.dtype}, TensorRT needs int8")
        )
    if np.any(zero != 0):
        problems.append(Problem(name, node.op_type, "asymmetric (non-zero zero point)"))
    if np.any(scale <= 0):
        problems.append(Problem(name, node.op_type, "scales must be positive"))
    data = initializers.get(node.input[0])
    if node.op_type == "DequantizeLinear" and data is not None and data.dtype == np.int32:
        problems.append(Problem(name, node.op_type, "INT32 (bias) dequantization"))
    if scale.size > 1 and not _is_weight(node.input[0], initializers, producers):
        problems.append(
            Problem(name, node.op_type, "per-channel scales on an activation (weights only)")
        )


def check_graph(
    model: onnx.ModelProto | str,
    versions: Sequence[str] = ("8.6", "10.3"),
    profiles: Mapping[str, Mapping[int, Sequence[int]]] | None = None,
) -> list[Problem]:
    """Everything in ``model`` that the given TensorRT versions would refuse.

    Args:
        model: the ONNX model or its path.
        versions: TensorRT versions to check against (keys of :data:`SUPPORTED_OPS`).
        profiles: input name → axis → (min, opt, max), the optimization-profile ranges the
            deployment declares for dynamic axes.

    Returns:
        The problems found, in graph order; empty when TensorRT should parse the graph.
    """
    if isinstance(model, str):
        model = onnx.load(model)
    unknown = [v for v in versions if v not in SUPPORTED_OPS]
    if unknown:
        raise ValueError(f"unknown TensorRT version(s) {unknown}; known: {sorted(SUPPORTED_OPS)}")
    problems: list[Problem] = []
    opset = {o.domain: o.version for o in model.opset_import}.get("", 0)
    for version in versions:
        if opset > MAX_OPSET[version]:
            problems.append(
                Problem(
                    "model", "opset", f"opset {opset} > {MAX_OPSET[version]} (TensorRT {version})"
                )
            )
    initializers = _constants(model.graph)
    producers = {out: n for n in model.graph.node for out in n.output}
    for node in _nodes(model.graph):
        name = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in ("", "ai.onnx"):
            problems.append(
                Problem(name, node.op_type, f"custom domain {node.domain!r} needs a plugin")
            )
            continue
        missing = [v for v in versions if node.op_type not in SUPPORTED_OPS[v]]
        if missing:
            problems.append(
                Problem(name, node.op_type, f"not supported by TensorRT {', '.join(missing)}")
            )
        if node.op_type == "Resize":
            attrs = _attributes(node)
            mode = _text(attrs.get("mode"), "nearest")
            coords = _text(attrs.get("coordinate_transformation_mode"), "half_pixel")
            if mode not in RESIZE_MODES:
                problems.append(Problem(name, node.op_type, f"{mode} resize (nearest/linear only)"))
            if coords not in RESIZE_COORDINATES:
                problems.append(Problem(name, node.op_type, f"coordinate mode {coords}"))
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_quantization(node, initializers, producers, problems)
    problems += _check_dynamic_axes(model, profiles or {})
    return problems


def _check_dynamic_axes(
    model: onnx.ModelProto, profiles: Mapping[str, Mapping[int, Sequence[int]]]
) -> list[Problem]:
    problems = []
    init_names = {t.name for t in model.graph.initializer}
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if i == 0:
                consumers.setdefault(name, set()).add(node.op_type)
    for value in model.graph.input:
        if value.name in init_names:
            continue
        dims = value.type.tensor_type.shape.dim
        ranges = profiles.get(value.name, {})
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value"):
                continue
            label = dim.dim_param or "?"
            if axis == 1 and consumers.get(value.name, set()) & _STATIC_CHANNEL_OPS:
                problems.append(
                    Problem(value.name, "input", f"dynamic channel axis {label}: must be static")
                )
            elif axis not in ranges:
                problems.append(
                    Problem(
                        value.name,
                        "input",
                        f"dynamic axis {axis} ({label}) has no optimization-profile range",
                    )
                )
            else:
                low, opt, high = ranges[axis]
                if not 1 <= low <= opt <= high:
                    problems.append(
                        Problem(value.name, "input", f"axis {axis} range {ranges[axis]} invalid")
                    )
    return problems


def format_problems(problems: Sequence[Problem]) -> str:
    """One line per problem, for error messages and reports."""
    return "\n".join(f"  {p}" for p in problems)
