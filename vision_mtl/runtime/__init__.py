"""The edge runtime: run an exported model with numpy and ONNX Runtime or TensorRT alone.

Everything ``deploy/`` needs between an image and its predictions, without torch, mmengine or
albumentations (a Jetson often has none of them); importing it loads numpy and the standard
library only, and OpenCV or onnxruntime when an image is read or a session is opened.

* :mod:`~vision_mtl.runtime.sidecar`: the sidecar format, its digest, file checksums, names;
* :mod:`~vision_mtl.runtime.deployment`: :func:`load_deployment` and :class:`Deployment`
  (the checked sidecar, pre- and post-processing as it describes them);
* :mod:`~vision_mtl.runtime.preprocess`: read an image, check it fits, normalize and pad;
* :mod:`~vision_mtl.runtime.decode`: the decoding rules, one table with a NumPy and a torch
  interpreter (the model's ``predict`` mode uses the torch one);
* :mod:`~vision_mtl.runtime.colorize`: palettes and colourisation (training pictures use them);
* :mod:`~vision_mtl.runtime.ort`: :class:`OrtRunner`, the ONNX Runtime backend.
* :mod:`~vision_mtl.runtime.reference`: the export's reference inputs (:func:`load_reference`),
  checked against the sidecar, for comparing a device's engines with ONNX Runtime.

The TensorRT backend is ``deploy/trt_runtime.py``; the export side, which needs torch and onnx,
is :mod:`vision_mtl.export` (its ``runtime`` and ``validate`` modules re-export these names).
"""

from vision_mtl.runtime.colorize import colorize, colorize_depth, make_palette
from vision_mtl.runtime.decode import DECODE_RULES, DecodeRule, decode_array, get_rule
from vision_mtl.runtime.deployment import Deployment, load_deployment
from vision_mtl.runtime.ort import OrtRunner
from vision_mtl.runtime.preprocess import check_image, normalize_and_pad, read_image
from vision_mtl.runtime.reference import ReferenceInputs, load_reference
from vision_mtl.runtime.sidecar import SIDECAR_FORMAT, DeploymentError

__all__ = [
    "DECODE_RULES",
    "SIDECAR_FORMAT",
    "DecodeRule",
    "Deployment",
    "DeploymentError",
    "OrtRunner",
    "ReferenceInputs",
    "check_image",
    "colorize",
    "colorize_depth",
    "decode_array",
    "get_rule",
    "load_deployment",
    "load_reference",
    "make_palette",
    "normalize_and_pad",
    "read_image",
]
