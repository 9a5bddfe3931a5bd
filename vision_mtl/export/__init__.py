"""From a trained model to files a runtime can load: ONNX export, checks, quantization."""

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

__all__ = [
    "SIDECAR_FORMAT",
    "Deployment",
    "DeploymentError",
    "Exported",
    "OrtRunner",
    "ParityReport",
    "Problem",
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
