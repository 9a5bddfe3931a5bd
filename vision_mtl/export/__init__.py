"""From a trained model to files a runtime can load: ONNX export, checks, quantization.

Names are resolved when first used (PEP 562), so importing a light submodule
(``vision_mtl.export.validate``, ``.timing``, ``.tensorrt_check``) does not load torch through
the exporter; ``from vision_mtl.export import export_onnx`` works as it always has.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vision_mtl.export.onnx_export import (
        SIDECAR_FORMAT,
        Exported,
        TensorOutputs,
        export_canvas,
        export_onnx,
        publish,
        staging_dir,
    )
    from vision_mtl.export.parity import ParityReport, check_parity
    from vision_mtl.export.runtime import Deployment, DeploymentError, OrtRunner, load_deployment
    from vision_mtl.export.tensorrt_check import Problem, check_graph, format_problems

_WHERE = {
    "SIDECAR_FORMAT": "onnx_export",
    "Exported": "onnx_export",
    "TensorOutputs": "onnx_export",
    "export_canvas": "onnx_export",
    "export_onnx": "onnx_export",
    "publish": "onnx_export",
    "staging_dir": "onnx_export",
    "ParityReport": "parity",
    "check_parity": "parity",
    "Deployment": "runtime",
    "DeploymentError": "runtime",
    "OrtRunner": "runtime",
    "load_deployment": "runtime",
    "Problem": "tensorrt_check",
    "check_graph": "tensorrt_check",
    "format_problems": "tensorrt_check",
}

__all__ = [
    "Deployment",
    "DeploymentError",
    "Exported",
    "OrtRunner",
    "ParityReport",
    "Problem",
    "SIDECAR_FORMAT",
    "TensorOutputs",
    "check_graph",
    "check_parity",
    "export_canvas",
    "export_onnx",
    "format_problems",
    "load_deployment",
    "publish",
    "staging_dir",
]


def __getattr__(name: str):
    """Import the submodule that defines ``name`` (or the submodule ``name``) on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
