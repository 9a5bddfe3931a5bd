"""The ONNX Runtime backend: a checked session for a :class:`~vision_mtl.runtime.Deployment`.

:class:`OrtRunner` refuses a file that is not a complete ONNX model and a graph whose input or
outputs are not the ones the sidecar describes. onnxruntime is imported when a runner is made,
so the rest of the runtime works where only TensorRT is installed.

On an x86 CPU a quantized graph is re-encoded in memory with unsigned activations, the form
ONNX Runtime's x86 integer kernels fuse (:func:`vision_mtl.runtime.onnx_model.unsigned_activations`,
an exact re-encoding); the file on disk is not changed. That needs the ``onnx`` package, which
is imported only for a graph that holds ``QuantizeLinear`` nodes: an fp32 graph runs on
numpy and onnxruntime alone.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from vision_mtl.runtime.deployment import Deployment
from vision_mtl.runtime.sidecar import DeploymentError, invalid_onnx_message

# onnxruntime's exception types for a file that is not a loadable model (not a missing kernel).
_INVALID_MODEL = {"InvalidProtobuf", "InvalidGraph", "Fail", "InvalidArgument"}
_X86 = ("x86_64", "amd64", "i386", "i686")
# An operator's type is stored verbatim in the protobuf: a file without these bytes has no
# QuantizeLinear node, so it needs no parsing to know it is not quantized.
_QUANTIZE_OP = b"QuantizeLinear"


def _contains(path: Path, pattern: bytes, chunk: int = 1 << 20) -> bool:
    """Whether the file's bytes contain ``pattern`` (read in chunks that overlap by its length)."""
    tail = b""
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                if pattern in tail + block:
                    return True
                tail = block[-(len(pattern) - 1) :]
    except OSError as err:
        raise DeploymentError(f"cannot read ONNX file {str(path)!r}: {err.strerror}") from None
    return False


def _x86_cpu_form(path: Path) -> tuple[str | bytes, int]:
    """The graph as x86 CPU kernels run it fastest: a quantized graph's activations as UINT8.

    Returns the path, untouched, for a graph without quantization, else the re-encoded model's
    bytes and how many zero points changed.
    """
    if not _contains(path, _QUANTIZE_OP):
        return str(path), 0
    from vision_mtl.runtime.onnx_model import is_quantized, load_onnx, unsigned_activations

    model = load_onnx(path, check=False)  # the session that follows checks the graph
    if not is_quantized(model):
        return str(path), 0
    try:
        changed = unsigned_activations(model)
    except ValueError as err:
        raise DeploymentError(f"{str(path)!r}: {err}") from None
    return model.SerializeToString(), changed


class OrtRunner:
    """ONNX Runtime inference for a :class:`Deployment` (CUDA when available, else CPU).

    On an x86 CPU a quantized graph is re-encoded in memory with unsigned activations (exact;
    the form ONNX Runtime's x86 integer kernels fuse); the file on disk is not changed.
    """

    def __init__(
        self,
        deployment: Deployment,
        onnx_path: str | os.PathLike | None = None,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        """Open a session on the deployment's graph (or ``onnx_path``) and check its signature.

        Raises:
            DeploymentError: the file is not a complete ONNX model, ONNX Runtime cannot load
                it, or its input or outputs differ from the sidecar's.
        """
        import onnxruntime as ort

        self.deployment = deployment
        path = Path(onnx_path) if onnx_path else deployment.onnx_path
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = providers or [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
        ]
        source: str | bytes = str(path)
        self.reencoded = 0
        if providers[0] == "CPUExecutionProvider" and platform.machine().lower() in _X86:
            source, self.reencoded = _x86_cpu_form(path)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            if type(err).__name__ in _INVALID_MODEL:
                raise DeploymentError(invalid_onnx_message(path, err)) from None
            reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise DeploymentError(f"ONNX Runtime cannot load {str(path)!r}: {reason}") from None
        self._check_signature(path)

    def _check_signature(self, path: Path) -> None:
        spec = self.deployment.sidecar
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [spec["input"]["name"]]:
            raise DeploymentError(
                f"{str(path)!r} takes inputs {[i.name for i in inputs]}, the sidecar describes "
                f"[{spec['input']['name']!r}]"
            )
        static = list(inputs[0].shape[1:])
        if static != spec["input"]["shape"][1:]:
            raise DeploymentError(
                f"{str(path)!r} takes input shape {inputs[0].shape}, the sidecar describes "
                f"{spec['input']['shape']}"
            )
        names = [o.name for o in self.session.get_outputs()]
        if names != self.deployment.tasks:
            raise DeploymentError(
                f"{str(path)!r} has outputs {names}, the sidecar describes {self.deployment.tasks}"
            )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for a preprocessed batch, keyed by task."""
        name = self.deployment.sidecar["input"]["name"]
        values = self.session.run(None, {name: np.ascontiguousarray(batch, np.float32)})
        return dict(zip(self.deployment.tasks, values, strict=True))

    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Predictions per image, as :func:`vision_mtl.apis.inference` returns them."""
        batch, sizes = self.deployment.preprocess(images)
        return self.deployment.postprocess(self.run(batch), sizes)
