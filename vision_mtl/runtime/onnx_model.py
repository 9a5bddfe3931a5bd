"""ONNX graphs as the runtime reads them: loading with a clear error, and the x86 INT8 form.

``onnx`` is imported when a function is called, never at import: the edge runtime runs fp32
graphs with numpy and onnxruntime alone, and needs ``onnx`` only to re-encode a quantized graph's
activations for ONNX Runtime's x86 integer kernels (:func:`unsigned_activations`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from vision_mtl.runtime.sidecar import DeploymentError, invalid_onnx_message

if TYPE_CHECKING:
    import onnx


def load_onnx(path: str | os.PathLike, check: bool = True):
    """Parse (and by default check) an ONNX file, with one error sentence if it cannot be used.

    A file that does not parse (truncated mid-message) or parses into an incomplete model
    (truncated at a field boundary: no opset, no graph outputs) fails the same way.

    Raises:
        DeploymentError: naming the file and saying it is not a valid, complete ONNX model.
    """
    import onnx

    try:
        model = onnx.load(str(path))
        if check:
            onnx.checker.check_model(model)
    except OSError as err:
        raise DeploymentError(f"cannot read ONNX file {str(path)!r}: {err.strerror}") from None
    except Exception as err:  # protobuf's DecodeError, onnx's ValidationError, ...
        raise DeploymentError(invalid_onnx_message(path, err)) from None
    return model


def is_quantized(model: onnx.ModelProto) -> bool:
    """Whether the graph holds quantization (a QuantizeLinear node)."""
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def unsigned_activations(model: onnx.ModelProto) -> int:
    """Re-encode symmetric INT8 activations as UINT8 with zero point 128, in place.

    Every zero point of an activation Q/DQ pair (one not applied to an initializer, i.e. not
    a weight) that is a zero INT8 scalar becomes a UINT8 128. Dequantized values are unchanged:
    ``(q + 128 - 128) * scale``. Weights stay signed. Returns how many zero points changed.

    Raises:
        ValueError: an activation zero point is not zero (the graph is not symmetric INT8).
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    changed = set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            continue  # a weight
        name = node.input[2]
        if name in changed or name not in inits:
            continue
        zero = numpy_helper.to_array(inits[name])
        if zero.dtype != np.int8:
            continue
        if zero.size != 1 or int(zero.reshape(-1)[0]) != 0:
            raise ValueError(f"zero point {name!r} of node {node.name!r} is not a zero INT8 scalar")
        inits[name].CopyFrom(
            numpy_helper.from_array(np.array(128, np.uint8).reshape(zero.shape), name)
        )
        changed.add(name)
    return len(changed)
