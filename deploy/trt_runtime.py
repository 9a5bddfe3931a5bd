"""TensorRT side of deploy/: engine sidecars and an engine runner (needs TensorRT and a GPU).

An engine built by ``deploy/build_engine.py`` gets a sidecar ``<engine>.json``: the ONNX
sidecar plus an ``engine`` section (TensorRT version, precision, optimization profile, the
SHA-256 of the engine file and of the ONNX file it came from), sealed with the digest of its
own content (:mod:`vision_mtl.runtime.sidecar`). :func:`load_engine_deployment` refuses, before
TensorRT deserializes anything, an edited or unsealed sidecar and an engine whose checksum
differs from its sidecar's.

Device buffers come from torch where it is installed (NVIDIA's torch build on JetPack) and from
the CUDA runtime library through ctypes where it is not (:mod:`cuda_buffers`), so a device with
numpy and TensorRT alone runs engines; no pycuda is needed. Both TensorRT 8.6 (bindings) and
10.x (named tensors) execution APIs are supported.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cuda_buffers import cuda_unavailable, make_buffers

from vision_mtl.runtime import Deployment
from vision_mtl.runtime.sidecar import (
    DIGEST_KEY,
    SIDECAR_FORMAT,
    DeploymentError,
    check_outputs,
    check_sidecar_digest,
    file_sha256,
    read_json,
    seal_sidecar,
)

REBUILD = "build the engine again with deploy/build_engine.py"


def tensorrt_unavailable() -> str | None:
    """Why the TensorRT paths cannot run here, or ``None`` if they can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed (it ships with JetPack/TensorRT)"
    return cuda_unavailable()


def engine_sidecar_path(engine_path: str | os.PathLike) -> Path:
    """Where an engine's sidecar lives: the engine path with a ``.json`` suffix."""
    return Path(engine_path).with_suffix(".json")


def make_engine_sidecar(deployment: Deployment, engine_path: Path, **engine: object) -> dict:
    """The sealed sidecar of an engine built from ``deployment``.

    The ONNX sidecar's fields, plus an ``engine`` section: ``engine``'s items (TensorRT
    version, precision, profile, ...) with the engine file's name and SHA-256 and the source
    ONNX file's SHA-256; the digest covers all of it.
    """
    sidecar = {k: v for k, v in deployment.sidecar.items() if k != DIGEST_KEY}
    sidecar["engine"] = dict(
        file=engine_path.name,
        sha256=file_sha256(engine_path),
        onnx_sha256=deployment.sidecar["onnx_sha256"],
        **engine,
    )
    return seal_sidecar(sidecar)


def load_engine_deployment(engine_path: str | os.PathLike) -> Deployment:
    """The sidecar of an engine, checked for edits and against the engine file.

    Raises:
        DeploymentError: the engine or sidecar is missing, the sidecar is not JSON, of another
            format, edited after the build or unsealed, or the engine's checksum differs.
    """
    engine_path = Path(engine_path)
    sidecar_path = engine_sidecar_path(engine_path)
    if not engine_path.is_file():
        raise DeploymentError(f"engine {str(engine_path)!r} does not exist")
    if not sidecar_path.is_file():
        raise DeploymentError(
            f"engine sidecar {str(sidecar_path)!r} does not exist (build_engine.py writes it)"
        )
    sidecar = read_json(sidecar_path, "engine sidecar")
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise DeploymentError(
            f"engine sidecar {str(sidecar_path)!r} has format {sidecar.get('format')!r}, "
            f"expected {SIDECAR_FORMAT!r}"
        )
    engine = sidecar.get("engine")
    if not isinstance(engine, dict) or "sha256" not in engine:
        raise DeploymentError(
            f"{str(sidecar_path)!r} has no 'engine' section with a sha256 (it is not an engine "
            f"sidecar); {REBUILD}"
        )
    check_sidecar_digest(sidecar, sidecar_path, REBUILD, "the engine build")
    for key in ("input", "outputs"):
        if key not in sidecar:
            raise DeploymentError(f"engine sidecar {str(sidecar_path)!r} lacks key {key!r}")
    check_outputs(sidecar, sidecar_path, REBUILD)
    if file_sha256(engine_path) != engine["sha256"]:
        raise DeploymentError(
            f"{str(engine_path)!r} does not match its sidecar {str(sidecar_path)!r}: the engine "
            f"is corrupted or from another build; {REBUILD}"
        )
    return Deployment(sidecar_path, sidecar)


class TrtRunner:
    """Run a serialized TensorRT engine on preprocessed batches."""

    def __init__(self, engine_path: str | os.PathLike) -> None:
        reason = tensorrt_unavailable()
        if reason:
            raise RuntimeError(f"cannot run a TensorRT engine: {reason}")
        import tensorrt as trt

        self.deployment = load_engine_deployment(engine_path)
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise DeploymentError(f"TensorRT could not deserialize {str(engine_path)!r}")
        self.context = self.engine.create_execution_context()
        self.named = hasattr(self.engine, "num_io_tensors")  # TensorRT >= 8.5 / 10
        self.buffers = make_buffers()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for a preprocessed batch, keyed by task."""
        buffers = self.buffers
        name = self.deployment.sidecar["input"]["name"]
        batch = np.ascontiguousarray(batch, np.float32)
        image = buffers.to_device(name, batch)
        if self.named:
            self.context.set_input_shape(name, tuple(batch.shape))
            self.context.set_tensor_address(name, image)
            for task in self.deployment.tasks:
                shape = tuple(self.context.get_tensor_shape(task))
                self.context.set_tensor_address(task, buffers.output(task, shape))
            self.context.execute_async_v3(buffers.stream)
        else:
            bindings = [0] * self.engine.num_bindings
            index = self.engine.get_binding_index(name)
            self.context.set_binding_shape(index, tuple(batch.shape))
            bindings[index] = image
            for task in self.deployment.tasks:
                index = self.engine.get_binding_index(task)
                shape = tuple(self.context.get_binding_shape(index))
                bindings[index] = buffers.output(task, shape)
            self.context.execute_async_v2(bindings, buffers.stream)
        buffers.synchronize()
        return {task: buffers.to_host(task) for task in self.deployment.tasks}

    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Predictions per image, as :func:`vision_mtl.apis.inference` returns them."""
        batch, sizes = self.deployment.preprocess(images)
        return self.deployment.postprocess(self.run(batch), sizes)
