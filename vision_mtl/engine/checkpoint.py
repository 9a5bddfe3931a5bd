"""Checkpoints that are never half-written and load under torch's ``weights_only`` default.

* :class:`AtomicLocalBackend` is mmengine's local file backend with writes that go to a temporary
  file in the same directory and are renamed into place, so a crash (or a non-finite loss) in the
  middle of saving leaves the previous checkpoint intact. :class:`AtomicCheckpointHook` uses it and
  also writes the ``last_checkpoint`` pointer atomically.
* :func:`allow_mmengine_checkpoint_types` allow-lists exactly the non-tensor types an mmengine
  checkpoint holds (the message hub's history buffers and the numpy values inside them), because
  mmengine 0.10.7 calls ``torch.load`` without ``weights_only`` and torch now defaults it to True.
  Nothing is loaded with ``weights_only=False``. A HistoryBuffer's default pickle also stores its
  statistics methods, which unpickling fetches through ``getattr`` — a global that must never be
  allow-listed — so HistoryBuffer is pickled from its constructor arguments instead (the
  buffer it rebuilds is identical).
"""

from __future__ import annotations

import copyreg
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging.history_buffer import HistoryBuffer

from vision_mtl.registry import HOOKS


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


class AtomicLocalBackend(LocalBackend):
    """mmengine's LocalBackend whose ``put``/``put_text`` never leave a partial file."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


register_backend("atomic_local", AtomicLocalBackend, force=True)


def _reduce_history_buffer(buffer: HistoryBuffer) -> tuple:
    return HistoryBuffer, (buffer._log_history, buffer._count_history, buffer.max_length)


copyreg.pickle(HistoryBuffer, _reduce_history_buffer)


def _numpy_globals() -> list:
    """numpy's pickling helpers and the dtypes a HistoryBuffer's arrays and scalars use."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    scalar = core.multiarray.scalar
    dtype_classes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def allow_mmengine_checkpoint_types() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints (see module docstring)."""
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_globals()])


allow_mmengine_checkpoint_types()


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
    path = check_checkpoint_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} holds a {type(data).__name__}, not a checkpoint dict")
    return data


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook with every file it writes made atomic and retention made safe.

    * Checkpoints go through :class:`AtomicLocalBackend` (the default ``backend_args`` here), and
      the ``last_checkpoint`` pointer — which mmengine writes with a plain ``open(..., 'w')`` — is
      written through :func:`atomic_write_bytes`.
    * Retention (``max_keep_ckpts``) drops the oldest checkpoints only after the new one and the
      pointer are in place (mmengine deletes first, so a crash while saving with
      ``max_keep_ckpts=1`` left a pointer to a deleted file and no checkpoint at all).
    * Temporary files of ours left by a run that was killed while saving are removed when the
      next run in the work dir starts (the work dir lock guarantees no other run is writing).
    * A pruned model's record (``model.pruning_record``) goes into every checkpoint's ``meta``,
      so fine-tuned pruned checkpoints rebuild their architecture like ``pruned.pth`` does.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("backend_args", dict(backend="atomic_local"))
        super().__init__(**kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for directory in {Path(runner.work_dir), Path(self.out_dir)}:
                for stale in stale_temporary_files(directory, self.filename_tmpl):
                    runner.logger.warning(
                        f"removing {str(stale)!r}, a partial file left by an interrupted save"
                    )
                    stale.unlink()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        record = getattr(model, "pruning_record", None)
        if record is not None:
            checkpoint.setdefault("meta", {})["pruning"] = record

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        expired = self._rotate(step, runner)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        atomic_write_bytes(str(self.last_ckpt).encode(), Path(runner.work_dir) / "last_checkpoint")
        for path in expired:  # only now: the new checkpoint and the pointer are in place
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)

    def _rotate(self, step: int, runner) -> list[str]:
        """Record ``step`` among the kept checkpoints; the paths that fall out of the window."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []
        expired = []
        while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
            oldest = self.keep_ckpt_ids.popleft()
            expired.append(
                self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(oldest))
            )
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        return expired


def stale_temporary_files(directory: Path, filename_tmpl: str = "iter_{}.pth") -> list[Path]:
    """Hidden temporary files :func:`atomic_write_bytes` made for checkpoints or the pointer.

    Only names of the form ``.<checkpoint or last_checkpoint>.<random>.tmp`` match, so no file
    of the user's is ever touched.
    """
    if not directory.is_dir():
        return []
    names = [re.escape(part) for part in filename_tmpl.split("{}")]
    checkpoint = r"\d+".join(names)
    pattern = re.compile(rf"^\.(?:{checkpoint}|last_checkpoint)\.[A-Za-z0-9_]+\.tmp$")
    return sorted(p for p in directory.iterdir() if pattern.match(p.name) and p.is_file())
