"""Run an exported model: the sidecar, pre- and post-processing, and the ONNX Runtime backend.

Pre- and post-processing are the training ones in NumPy: an H×W×3 uint8 RGB image is normalized
with the sidecar's mean and std and padded at the bottom/right with 0 to the canvas
(:class:`~vision_mtl.models.MultiTaskDataPreprocessor`); each output is cropped back to the
image and decoded by its task's rule (:meth:`~vision_mtl.tasks.TaskSpec.decode_array`).

:func:`load_deployment` refuses, before any inference, a sidecar of another format, one edited
after export or without the digest of its content (:mod:`vision_mtl.export.validate`), one
naming a graph outside its directory, an ONNX file whose SHA-256 differs from the one the
sidecar recorded (a corrupted or swapped file); :class:`OrtRunner` refuses a file that is not a
complete ONNX model and a graph whose input or outputs are not the ones the sidecar describes.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision_mtl.export.validate import (
    SIDECAR_FORMAT,
    DeploymentError,
    check_sidecar_digest,
    file_sha256,
    invalid_onnx_message,
    is_plain_file_name,
    load_onnx,
    read_json,
)
from vision_mtl.tasks import get_task

_REQUIRED = ("format", "onnx", "onnx_sha256", "input", "outputs")
REEXPORT = "export (or quantize) the model again"
# onnxruntime's exception types for a file that is not a loadable model (not a missing kernel).
_INVALID_MODEL = {"InvalidProtobuf", "InvalidGraph", "Fail", "InvalidArgument"}


@dataclass
class Deployment:
    """A sidecar and the files it describes."""

    sidecar_path: Path
    sidecar: dict

    @property
    def onnx_path(self) -> Path:
        return self.sidecar_path.parent / self.sidecar["onnx"]

    @property
    def canvas(self) -> tuple[int, int]:
        return tuple(self.sidecar["input"]["shape"][2:])

    @property
    def tasks(self) -> list[str]:
        return [o["task"] for o in self.sidecar["outputs"]]

    def check_image(self, image: np.ndarray, name: str) -> np.ndarray:
        """``image`` as an array if the graph can take it, else an error naming it.

        Callers that read files check every image with its file name before any output is
        written; :meth:`preprocess` checks again, naming the position in the batch.

        Raises:
            DeploymentError: not H×W×3 uint8 RGB, or larger than the exported canvas.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DeploymentError(
                f"{name} must be H×W×3 uint8 RGB, got {image.shape} {image.dtype}"
            )
        height, width = self.canvas
        h, w = image.shape[:2]
        if h > height or w > width:
            raise DeploymentError(
                f"{name} is {h}x{w}, larger than the exported canvas {height}x{width}; "
                "resize it or export with --shape"
            )
        return image

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Normalize and pad images to the canvas; returns the batch and each image's size."""
        spec = self.sidecar["input"]
        mean = np.asarray(spec["mean"], np.float32)
        std = np.asarray(spec["std"], np.float32)
        height, width = self.canvas
        batch = np.zeros((len(images), 3, height, width), np.float32)
        sizes = []
        for i, image in enumerate(images):
            image = self.check_image(image, f"image {i}")
            h, w = image.shape[:2]
            batch[i, :, :h, :w] = ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1)
            sizes.append((h, w))
        return batch, sizes

    def postprocess(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]]
    ) -> list[dict[str, np.ndarray]]:
        """Per image, task → prediction at the image's size (normals H×W×3)."""
        results = []
        decoded = {t: get_task(t).decode_array(outputs[t]) for t in self.tasks}
        for i, (h, w) in enumerate(sizes):
            sample = {}
            for task, value in decoded.items():
                value = value[i, ..., :h, :w]
                sample[task] = value.transpose(1, 2, 0) if value.ndim == 3 else value
            results.append(sample)
        return results


def load_deployment(path: str | os.PathLike) -> Deployment:
    """Read and check the sidecar of an exported model.

    Args:
        path: the sidecar JSON, the ONNX file (its sidecar has the same stem) or the export
            directory (holding one sidecar).

    Raises:
        DeploymentError: the sidecar is missing, malformed, of another format, edited after
            export or without its digest, or names a file outside its directory; or the ONNX
            file is missing or does not match the sidecar's checksum.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            raise DeploymentError(
                f"{str(path)!r} must hold exactly one sidecar .json, found {[p.name for p in found]}"
            )
        path = found[0]
    elif path.suffix != ".json":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise DeploymentError(f"sidecar {str(path)!r} does not exist (export writes it)")
    sidecar = read_json(path)
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise DeploymentError(
            f"sidecar {str(path)!r} has format {sidecar.get('format')!r}, expected "
            f"{SIDECAR_FORMAT!r}"
        )
    check_sidecar_digest(sidecar, path, REEXPORT)
    missing = [k for k in _REQUIRED if k not in sidecar]
    if missing:
        raise DeploymentError(f"sidecar {str(path)!r} lacks key(s) {missing}")
    if not is_plain_file_name(sidecar["onnx"]):
        raise DeploymentError(
            f"sidecar {str(path)!r} has 'onnx' {sidecar['onnx']!r}, expected a file name in "
            "the sidecar's own directory"
        )
    deployment = Deployment(path, sidecar)
    onnx_path = deployment.onnx_path
    if not onnx_path.is_file():
        raise DeploymentError(f"{str(onnx_path)!r}, named by sidecar {str(path)!r}, is missing")
    digest = file_sha256(onnx_path)
    if digest != sidecar["onnx_sha256"]:
        raise DeploymentError(
            f"{str(onnx_path)!r} does not match its sidecar {str(path)!r} (SHA-256 {digest[:12]}… "
            f"instead of {sidecar['onnx_sha256'][:12]}…): the file is corrupted or from another "
            "export; export again"
        )
    return deployment


_X86 = ("x86_64", "amd64", "i386", "i686")


def _x86_cpu_form(path: Path) -> tuple[str | bytes, int]:
    """The graph as x86 CPU kernels run it fastest: a quantized graph's activations as UINT8.

    See :func:`vision_mtl.export.quantize.unsigned_activations` (an exact re-encoding); an fp32
    graph is returned as its path, untouched.
    """
    from vision_mtl.export.quantize import is_quantized, unsigned_activations

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
        static = [d for d in inputs[0].shape[1:]]
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
