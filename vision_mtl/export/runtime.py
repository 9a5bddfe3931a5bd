"""Run an exported model: the names the export side has always imported from here.

The implementation is the edge runtime, :mod:`vision_mtl.runtime`, which needs neither torch nor
onnx and is what ``deploy/`` uses: :func:`load_deployment` and :class:`Deployment`
(:mod:`vision_mtl.runtime.deployment`), :class:`OrtRunner` (:mod:`vision_mtl.runtime.ort`).
This module re-exports them so existing imports (``tools/``, parity, quantization) keep working.
"""

from __future__ import annotations

from vision_mtl.runtime.deployment import REEXPORT, Deployment, load_deployment
from vision_mtl.runtime.ort import OrtRunner
from vision_mtl.runtime.sidecar import DeploymentError

__all__ = ["REEXPORT", "Deployment", "DeploymentError", "OrtRunner", "load_deployment"]
