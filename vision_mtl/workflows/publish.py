"""Publish a training checkpoint: weights and meta only, named by its content hash.

A checkpoint the Runner writes also holds what resuming needs — the optimizer state (for AdamW
twice the weights), the parameter schedulers and the message hub — none of which inference,
evaluation, export or fine-tuning (``load_from``) reads. Publishing keeps ``state_dict`` and
``meta`` (``dataset_meta`` with the class names, a pruned model's ``pruning`` record, the config
text) and names the file ``<stem>-<first 8 hex digits of its SHA-256>.pth``, so a downloaded
file can be checked against its name.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vision_mtl.utils import atomic_write_bytes, read_checkpoint, resolve_checkpoint

#: The top-level checkpoint entries a published file keeps.
KEPT_KEYS = ("state_dict", "meta")


@dataclass(frozen=True)
class PublishedCheckpoint:
    """What :func:`publish_checkpoint` wrote.

    Attributes:
        path: the published file.
        sha256: the SHA-256 of its bytes (hex); its first 8 digits end the file name.
        size_before: bytes of the source checkpoint.
        size_after: bytes of the published file.
        dropped: the top-level entries left out (``optimizer``, ``param_schedulers``, ...).
    """

    path: Path
    sha256: str
    size_before: int
    size_after: int
    dropped: tuple[str, ...]


def publish_checkpoint(
    checkpoint: str | os.PathLike, out_dir: str | os.PathLike
) -> PublishedCheckpoint:
    """Write ``checkpoint``'s ``state_dict`` and ``meta`` to ``out_dir/<stem>-<sha8>.pth``.

    The file is written atomically and holds only tensors and plain values, so
    ``torch.load(weights_only=True)`` reads it without any allow-listed type.

    Args:
        checkpoint: a ``.pth`` file, a work dir or its ``last_checkpoint`` file.
        out_dir: the directory for the published file (created if missing).

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it is not a readable checkpoint or has no ``state_dict``.
    """
    source = Path(resolve_checkpoint(checkpoint))
    data = read_checkpoint(source, mmap=True)  # tensors left out are never read
    if not isinstance(data.get("state_dict"), dict):
        raise ValueError(
            f"checkpoint {str(source)!r} has no 'state_dict' (it holds {sorted(data)}); only "
            "checkpoints with weights under 'state_dict' can be published"
        )
    published = {key: data[key] for key in KEPT_KEYS if key in data}
    buffer = io.BytesIO()
    torch.save(published, buffer)
    content = buffer.getvalue()
    digest = hashlib.sha256(content).hexdigest()
    path = Path(out_dir) / f"{source.stem}-{digest[:8]}.pth"
    atomic_write_bytes(content, path)
    return PublishedCheckpoint(
        path=path,
        sha256=digest,
        size_before=source.stat().st_size,
        size_after=len(content),
        dropped=tuple(sorted(key for key in data if key not in KEPT_KEYS)),
    )
