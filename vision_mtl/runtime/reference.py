"""Reference inputs: a few preprocessed images shipped with an export, checked like its graph.

A device that builds its own engine needs inputs to compare that engine with ONNX Runtime on,
and random noise says little about a quantized or FP16 engine (its activations leave the ranges
real images produce). So the export writes ``<stem>_reference.npz`` beside the pair: the first
images that the parity check compared (the config's validation set), preprocessed as the graph
takes them, and records the file in the sidecar's ``reference`` section (file name, SHA-256,
sample count), so a corrupted or swapped file is refused like a corrupted graph. The INT8 sidecar
written by quantization copies the section and so refers to the same file.

The file holds two arrays and nothing that needs unpickling:

* ``inputs``: N×3×H×W float32, normalized and zero-padded to the export canvas;
* ``sizes``: N×2 int64, each image's (height, width) before padding (outputs are compared
  there).

ONNX Runtime's outputs are not stored: they grow with the class count and the canvas (about
55 MB per image for 40 classes at 480×640), and the device computes them again anyway.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision_mtl.runtime.deployment import REEXPORT, Deployment
from vision_mtl.runtime.sidecar import DeploymentError, file_sha256, is_plain_file_name

REFERENCE_KEY = "reference"
REFERENCE_SUFFIX = "_reference.npz"
ARRAYS = ("inputs", "sizes")


@dataclass
class ReferenceInputs:
    """Checked reference inputs: the preprocessed batch and each image's size before padding."""

    path: Path
    inputs: np.ndarray
    sizes: list[tuple[int, int]]


def reference_file_name(stem: str) -> str:
    """The reference file of the export whose files are ``<stem>.onnx`` and ``<stem>.json``."""
    return f"{stem}{REFERENCE_SUFFIX}"


def reference_bytes(inputs: np.ndarray, sizes: list[tuple[int, int]]) -> bytes:
    """The ``.npz`` content of reference inputs (see the module docstring).

    Raises:
        ValueError: ``inputs`` is not N×3×H×W with N >= 1, or ``sizes`` is not one
            (height, width) per input within the canvas.
    """
    inputs = np.ascontiguousarray(inputs, np.float32)
    sizes_array = np.asarray(sizes, np.int64)
    _check_arrays(inputs, sizes_array, "reference inputs", ValueError)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=inputs, sizes=sizes_array)
    return buffer.getvalue()


def reference_section(path: Path, samples: int, split: str = "val") -> dict:
    """The sidecar's ``reference`` entry for the written file ``path``."""
    return dict(file=path.name, sha256=file_sha256(path), samples=int(samples), split=split)


def load_reference(deployment: Deployment) -> ReferenceInputs:
    """The reference inputs a checked sidecar records, after checking the file against it.

    Raises:
        DeploymentError: the sidecar records no reference inputs (an export made before they
            existed), its entry is malformed, or the file is missing, differs from its recorded
            SHA-256, or does not hold N×3×H×W float32 inputs at the sidecar's canvas and their
            sizes; each message names the file.
    """
    sidecar, where = deployment.sidecar, str(deployment.sidecar_path)
    entry = sidecar.get(REFERENCE_KEY)
    if entry is None:
        raise DeploymentError(
            f"sidecar {where!r} records no reference inputs (it was written before exports "
            f"carried them); {REEXPORT} with tools/export.py"
        )
    keys = {"file": str, "sha256": str, "samples": int}
    bad = [
        k for k, kind in keys.items() if not isinstance(entry, dict) or not _is(entry.get(k), kind)
    ]
    if bad or not is_plain_file_name(entry["file"]) or entry["samples"] < 1:
        raise DeploymentError(
            f"sidecar {where!r} has {REFERENCE_KEY!r} {entry!r}, expected file (a name beside "
            f"the sidecar), sha256 and samples (>= 1); {REEXPORT}"
        )
    path = deployment.sidecar_path.parent / entry["file"]
    if not path.is_file():
        raise DeploymentError(
            f"reference inputs {str(path)!r}, named by sidecar {where!r}, are missing; copy them "
            "with the model (export writes them beside model.onnx)"
        )
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise DeploymentError(
            f"{str(path)!r} does not match its sidecar {where!r} (SHA-256 {digest[:12]}… instead "
            f"of {entry['sha256'][:12]}…): the file is corrupted or from another export; "
            f"{REEXPORT}"
        )
    arrays = _read_npz(path)
    _check_arrays(arrays["inputs"], arrays["sizes"], repr(str(path)), DeploymentError)
    inputs, sizes = arrays["inputs"], arrays["sizes"]
    expected = [entry["samples"], *deployment.sidecar["input"]["shape"][1:]]
    if list(inputs.shape) != expected:
        raise DeploymentError(
            f"{str(path)!r} holds inputs of shape {list(inputs.shape)}, its sidecar {where!r} "
            f"describes {expected} ({entry['samples']} samples at the canvas); {REEXPORT}"
        )
    return ReferenceInputs(path, inputs, [(int(h), int(w)) for h, w in sizes])


def _is(value: object, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The two arrays of a reference file; never unpickles (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DeploymentError(
            f"{str(path)!r} is not a readable reference-inputs .npz file ({err}); {REEXPORT}"
        ) from None
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise DeploymentError(f"{str(path)!r} lacks array(s) {missing}; expected {list(ARRAYS)}")
    return arrays


def _check_arrays(inputs: np.ndarray, sizes: np.ndarray, name: str, error: type) -> None:
    """Refuse arrays that are not N×3×H×W finite float32 inputs with one size each."""
    if (
        inputs.dtype != np.float32
        or inputs.ndim != 4
        or inputs.shape[0] < 1
        or inputs.shape[1] != 3
    ):
        raise error(
            f"{name}: inputs have shape {list(inputs.shape)} and dtype {inputs.dtype}, expected "
            "N×3×H×W float32 with N >= 1"
        )
    if not np.isfinite(inputs).all():
        raise error(f"{name}: inputs hold non-finite values")
    canvas = inputs.shape[2:]
    if (
        sizes.shape != (inputs.shape[0], 2)
        or not np.issubdtype(sizes.dtype, np.integer)
        or (sizes < 1).any()
        or (sizes > np.asarray(canvas)).any()
    ):
        raise error(
            f"{name}: sizes {sizes.tolist()} must be one (height, width) per input, each "
            f"between 1 and the canvas {list(canvas)}"
        )
