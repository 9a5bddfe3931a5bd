"""Checks on what users give the export and deploy tools: sidecars, file names, graphs, counts.

The sidecar checks (format, digest, checksums, safe names, outputs) are the edge runtime's,
:mod:`vision_mtl.runtime.sidecar`, re-exported here under the names the export tools have always
used. Also re-exported: :func:`load_onnx` (:mod:`vision_mtl.runtime.onnx_model`) and, for command
lines, :func:`int_at_least` (:mod:`vision_mtl.utils`).

This module needs neither torch nor onnxruntime at import time (``deploy/`` uses it).
"""

from __future__ import annotations

from vision_mtl.runtime.onnx_model import load_onnx
from vision_mtl.runtime.sidecar import (
    DIGEST_KEY,
    SIDECAR_FORMAT,
    DeploymentError,
    check_outputs,
    check_sidecar_digest,
    file_sha256,
    invalid_onnx_message,
    is_plain_file_name,
    read_json,
    seal_sidecar,
    sidecar_bytes,
    sidecar_digest,
)
from vision_mtl.utils import int_at_least

__all__ = [
    "DIGEST_KEY",
    "SIDECAR_FORMAT",
    "DeploymentError",
    "check_outputs",
    "check_sidecar_digest",
    "file_sha256",
    "int_at_least",
    "invalid_onnx_message",
    "is_plain_file_name",
    "load_onnx",
    "read_json",
    "seal_sidecar",
    "sidecar_bytes",
    "sidecar_digest",
]
