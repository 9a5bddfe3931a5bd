"""An exported model as the runtime sees it: a checked sidecar and the files it describes.

:func:`load_deployment` refuses, before any inference, a sidecar of another format, one edited
after export or without the digest of its content (:mod:`vision_mtl.runtime.sidecar`), one
missing keys, naming a graph outside its directory or an output the runtime cannot decode, and
an ONNX file whose SHA-256 differs from the one the sidecar recorded (a corrupted or swapped
file).

A :class:`Deployment` turns images into the graph's input and the graph's outputs into
predictions exactly as the sidecar describes them: normalization and canvas from ``input``
(:mod:`vision_mtl.runtime.preprocess`), each output decoded by the rule recorded in ``outputs``
(:mod:`vision_mtl.runtime.decode`), cropped to the image and laid out as
:func:`vision_mtl.apis.inference` returns predictions (vectors H×W×C). :meth:`Deployment.predict`
takes images of any size in the ``resize`` and ``slide`` modes (:mod:`vision_mtl.runtime.tiling`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision_mtl.runtime.decode import DecodeRule, decode_array, get_rule
from vision_mtl.runtime.preprocess import check_image, normalize_and_pad
from vision_mtl.runtime.sidecar import (
    SIDECAR_FORMAT,
    DeploymentError,
    check_outputs,
    check_sidecar_digest,
    file_sha256,
    is_plain_file_name,
    read_json,
)
from vision_mtl.runtime.tiling import Run, check_mode, predict_images

REQUIRED_KEYS = ("format", "onnx", "onnx_sha256", "input", "outputs")
REEXPORT = "export (or quantize) the model again"


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

    @property
    def rules(self) -> dict[str, DecodeRule]:
        """Task → its decoding rule, as the sidecar records it."""
        return {o["task"]: get_rule(o["decode"]) for o in self.sidecar["outputs"]}

    @property
    def max_batch(self) -> int:
        """The most images one graph call takes: the batch profile's maximum, else 1."""
        profile = self.sidecar.get("batch_profile") or {}
        return int(profile.get("max") or 1)

    def check_image(self, image: np.ndarray, name: str, mode: str = "pad") -> np.ndarray:
        """``image`` as an array if the graph can take it in ``mode``, else an error naming it.

        Callers that read files check every image with its file name before any output is
        written; :meth:`preprocess` checks again, naming the position in the batch.

        Raises:
            DeploymentError: not H×W×3 uint8 RGB, or larger than the exported canvas in
                ``pad`` mode (``resize`` and ``slide`` take any size).
        """
        return check_image(image, self.canvas if check_mode(mode) == "pad" else None, name)

    def predict(
        self,
        run: Run,
        images: list[np.ndarray],
        mode: str = "pad",
        stride: tuple[int, int] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Per image, task → prediction at the image's size, in any inference mode.

        Args:
            run: a runner's ``run`` (canvas batch → raw outputs per task).
            images: H×W×3 uint8 RGB arrays of any size (``pad``: at most the canvas).
            mode: ``pad``, ``resize`` or ``slide`` (:mod:`vision_mtl.runtime.tiling`).
            stride: ``slide``'s stride in pixels (default 2/3 of the canvas).
        """
        spec = self.sidecar["input"]
        return predict_images(
            images,
            run,
            self.canvas,
            spec["mean"],
            spec["std"],
            self.rules,
            mode,
            stride,
            self.max_batch,
        )

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Normalize and pad images to the canvas; returns the batch and each image's size."""
        spec = self.sidecar["input"]
        return normalize_and_pad(images, spec["mean"], spec["std"], self.canvas)

    def postprocess(
        self, outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]]
    ) -> list[dict[str, np.ndarray]]:
        """Per image, task → prediction at the image's size (vectors H×W×C)."""
        decoded = {task: decode_array(rule, outputs[task]) for task, rule in self.rules.items()}
        results = []
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
            export or without its digest, names a file outside its directory or an unknown
            decoding rule; or the ONNX file is missing or does not match the sidecar's checksum.
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
    missing = [k for k in REQUIRED_KEYS if k not in sidecar]
    if missing:
        raise DeploymentError(f"sidecar {str(path)!r} lacks key(s) {missing}")
    check_outputs(sidecar, path, REEXPORT)
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
