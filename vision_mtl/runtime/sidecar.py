"""The sidecar's format and integrity: its digest, the SHA-256 of files, safe names, its outputs.

A sidecar records the SHA-256 of its ONNX file (``onnx_sha256``) and, since the pre- and
post-processing it describes (mean, std, canvas, decoding) change predictions as much as the
graph does, a digest of its own content: ``sidecar_sha256``, the SHA-256 of the canonical JSON
(sorted keys, no whitespace) of every other field. The digest is written by export, quantization
and ``deploy/build_engine.py`` (:func:`seal_sidecar`) and checked wherever a sidecar is read
(:func:`check_sidecar_digest`), so an edited sidecar, or one written before the digest existed,
is refused instead of silently changing predictions. The digest catches edits and corruption;
it is not a signature (whoever may write the sidecar can also recompute it).

No torch, onnx or onnxruntime: the edge runtime (:mod:`vision_mtl.runtime`) and the export
tools (:mod:`vision_mtl.export.validate` re-exports these names) share one implementation.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vision_mtl.runtime.decode import DECODE_RULES

SIDECAR_FORMAT = "vision_mtl.deploy/1"
DIGEST_KEY = "sidecar_sha256"


class DeploymentError(ValueError):
    """An exported model, engine or sidecar that cannot be used as it is."""


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_digest(sidecar: dict) -> str:
    """SHA-256 of the canonical JSON of every sidecar field except the digest itself.

    Canonical: sorted keys, no whitespace, ASCII; so re-indenting the file does not change it,
    while any edited value (a mean, a class count, a task name) does.
    """
    fields = {k: v for k, v in sidecar.items() if k != DIGEST_KEY}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal_sidecar(sidecar: dict) -> dict:
    """A copy of ``sidecar`` with its digest (recomputed: a stale one is replaced)."""
    sealed = {k: v for k, v in sidecar.items() if k != DIGEST_KEY}
    sealed[DIGEST_KEY] = sidecar_digest(sealed)
    return sealed


def sidecar_bytes(sidecar: dict) -> bytes:
    """The file content of a sealed sidecar: indented JSON, digest included."""
    return json.dumps(seal_sidecar(sidecar), indent=2).encode()


def check_sidecar_digest(
    sidecar: dict, path: str | os.PathLike, remedy: str, written_by: str = "export"
) -> None:
    """Refuse a sidecar whose content differs from what its writer sealed.

    Args:
        sidecar: the parsed sidecar.
        path: its file, for the message.
        remedy: what to do about it, e.g. ``"export the model again"``.
        written_by: the step that wrote it (``export``, ``the engine build``), for the message.

    Raises:
        DeploymentError: the digest is missing (an older or hand-written sidecar) or differs.
    """
    recorded = sidecar.get(DIGEST_KEY)
    if not isinstance(recorded, str):
        raise DeploymentError(
            f"sidecar {str(path)!r} has no {DIGEST_KEY!r} (it predates sidecar integrity checks "
            f"or was written by hand), so its pre-processing cannot be trusted; {remedy}"
        )
    if recorded != sidecar_digest(sidecar):
        raise DeploymentError(
            f"sidecar {str(path)!r} was modified after {written_by} (its content no longer matches "
            f"its {DIGEST_KEY}); {remedy} instead of editing the sidecar"
        )


def check_outputs(sidecar: dict, path: str | os.PathLike, remedy: str) -> None:
    """Refuse a sidecar whose outputs the runtime could not decode.

    Every entry of ``outputs`` must name its ``task`` (distinct) and a ``decode`` rule of
    :data:`~vision_mtl.runtime.decode.DECODE_RULES`: post-processing follows the sidecar, so an
    unknown rule would otherwise fail only after inference.

    Raises:
        DeploymentError: naming the sidecar, the output's position and the offending value.
    """
    outputs = sidecar.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise DeploymentError(
            f"sidecar {str(path)!r} has 'outputs' {outputs!r}, expected a non-empty list; {remedy}"
        )
    seen = set()
    for i, output in enumerate(outputs):
        task = output.get("task") if isinstance(output, dict) else None
        if not isinstance(task, str) or not task or task in seen:
            raise DeploymentError(
                f"sidecar {str(path)!r} output {i} has task {task!r}, expected a distinct task "
                f"name; {remedy}"
            )
        seen.add(task)
        rule = output.get("decode")
        if rule not in DECODE_RULES:
            raise DeploymentError(
                f"sidecar {str(path)!r} output {i} ({task}) has decode {rule!r}, expected one of "
                f"{sorted(DECODE_RULES)}; {remedy}"
            )


def read_json(path: Path, what: str = "sidecar") -> dict:
    """A JSON object from ``path``, or a :class:`DeploymentError` naming the file."""
    try:
        value = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DeploymentError(f"{what} {str(path)!r} is not valid JSON: {err}") from None
    except OSError as err:
        raise DeploymentError(f"cannot read {what} {str(path)!r}: {err.strerror}") from None
    if not isinstance(value, dict):
        raise DeploymentError(
            f"{what} {str(path)!r} holds a JSON {type(value).__name__}, expected an object"
        )
    return value


def is_plain_file_name(name: object) -> bool:
    """Whether ``name`` names a file inside a directory: no directory part, not ``.``/``..``."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in ("/", "\\", "\0"))
        and Path(name).name == name
    )


def invalid_onnx_message(path: str | os.PathLike, err: BaseException) -> str:
    """One sentence: ``path`` is not a valid, complete ONNX model, with the library's reason."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    for prefix in ("[ONNXRuntimeError] : ",):
        if reason.startswith(prefix):  # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load ..."
            reason = reason.split(" : ", 3)[-1]
    if len(reason) > 200:
        reason = reason[:200] + "…"
    return (
        f"{str(path)!r} is not a valid, complete ONNX model ({reason}); the file is truncated, "
        "corrupted or not an export: export it again"
    )
