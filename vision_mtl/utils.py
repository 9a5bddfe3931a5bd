"""File helpers every layer may use: atomic writes, strict JSON and checkpoint files.

Nothing here imports torch or mmengine at module import (``deploy/`` uses the atomic writer on
machines without the training stack); :func:`read_checkpoint` imports torch when called.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path


def _current_umask() -> int:
    """The process umask, read without changing it where /proc allows (no race with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The file gets the permissions ``open(path, 'w')`` would give it: an existing file's mode,
    else ``0o666`` less the umask (``mkstemp`` alone would make every file ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def int_at_least(minimum: int, requirement: str | None = None):
    """An argparse ``type`` accepting integers >= ``minimum``, so a bad count fails at parsing.

    ``requirement`` words the error (default ``"must be at least <minimum>"``).
    """
    requirement = requirement or f"must be at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{requirement}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def json_safe(data):
    """``data`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _non_finite(data, prefix: str = "") -> dict[str, str]:
    """``key path → 'nan' | 'inf' | '-inf'`` for every non-finite float in ``data``."""
    found = {}
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            found.update(_non_finite(value, name + "."))
        elif isinstance(value, float) and not math.isfinite(value):
            found[name] = str(value)
    return found


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as strict JSON through a temporary file (never a partial file).

    A non-finite number (a metric that is undefined, e.g. NaN when no pixel is valid) is
    written as ``null``, and its original value is listed under ``"non_finite"`` (key path →
    ``"nan"``/``"inf"``/``"-inf"``), so strict parsers read the file and nothing is hidden.
    """
    non_finite = _non_finite(data)
    safe = json_safe(data)
    if non_finite:
        if "non_finite" in safe:
            raise KeyError("write_json: 'non_finite' is reserved for the non-finite values list")
        safe["non_finite"] = non_finite
    text = json.dumps(safe, indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(text.encode(), path)


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def state_dict_mismatch(
    model, state_dict: Mapping, limit: int = 6, shape_limit: int = 3
) -> str | None:
    """What keeps ``state_dict`` from loading strictly into ``model`` (a torch module); ``None``
    when it fits.

    Returns one sentence fragment per kind of problem: keys the model needs that the checkpoint
    lacks, keys the model does not have, and keys whose shapes differ (with both shapes); each
    list names at most ``limit`` keys (``shape_limit`` for the shapes) and counts the rest.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} in the checkpoint vs {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in state_dict
        and hasattr(state_dict[k], "shape")
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing, limit)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected, limit)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes, shape_limit)}")
    return "; ".join(parts) or None


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """The checkpoint file ``path`` names; a work dir or ``last_checkpoint`` file is followed.

    A ``last_checkpoint`` pointer holds an absolute path. The file of that name beside the
    pointer wins, so a copied or moved work dir resumes from its own checkpoints, never from the
    directory it was copied from; the pointer's path is used only when no such file is there
    (checkpoints written to a separate ``out_dir``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last_checkpoint"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.name == "last_checkpoint":
        recorded = Path(path.read_text().strip())
        beside = path.parent / recorded.name
        target = beside if beside.is_file() else recorded
        if not recorded.name or not target.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} points to {str(recorded)!r}, which does not exist"
            )
        return str(target)
    return str(path)


def check_checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a readable checkpoint in torch's zip format, else a clear error.

    torch's messages for a wrong file are about mmap or pickle internals ("KeyError: 101"); a
    user needs to hear which file is wrong and why. Legacy (pre-1.6, non-zip) checkpoints are
    refused too: they cannot be memory-mapped and are rare enough that re-saving them is the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is not a PyTorch checkpoint in torch's zip format (torch.save since "
            "1.6); if it is a legacy checkpoint, load it in a trusted environment and save it "
            "again with torch.save"
        )
    return path


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """Load a checkpoint with ``weights_only=True`` after :func:`check_checkpoint_file`.

    Args:
        path: the ``.pth`` file.
        mmap: map the tensors instead of reading them (for reading ``meta`` of a large file).
    """
    import torch

    allow_checkpoint_types()
    path = check_checkpoint_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} holds a {type(data).__name__}, not a checkpoint dict")
    return data


_ALLOWED = False


def allow_checkpoint_types() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints; idempotent.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only`` and torch now defaults it to
    True, so the non-tensor types an mmengine checkpoint holds — the message hub's history
    buffers and the numpy values inside them — are allow-listed, exactly those. Nothing is loaded
    with ``weights_only=False``. A HistoryBuffer's default pickle also stores its statistics
    methods, which unpickling fetches through ``getattr`` — a global that must never be
    allow-listed — so HistoryBuffer is pickled from its constructor arguments instead (the buffer
    it rebuilds is identical).
    """
    global _ALLOWED
    if _ALLOWED:
        return
    import copyreg

    import numpy as np
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    core = getattr(np, "_core", None) or np.core
    dtype_classes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    numpy_globals = [
        core.multiarray._reconstruct,
        core.multiarray.scalar,
        np.ndarray,
        np.dtype,
        *dtype_classes,
    ]
    torch.serialization.add_safe_globals([HistoryBuffer, *numpy_globals])
    _ALLOWED = True


def _reduce_history_buffer(buffer) -> tuple:
    return type(buffer), (buffer._log_history, buffer._count_history, buffer.max_length)
