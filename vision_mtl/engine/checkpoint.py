"""Checkpoints that are never half-written and retention that never loses the last one.

:class:`AtomicLocalBackend` is mmengine's local file backend with writes that go to a temporary
file in the same directory and are renamed into place (:func:`vision_mtl.utils.atomic_write_bytes`),
so a crash (or a non-finite loss) in the middle of saving leaves the previous checkpoint intact.
:class:`AtomicCheckpointHook` uses it, writes the ``last_checkpoint`` pointer atomically too and
drops expired checkpoints only after the new one is in place.

Nothing is registered at import: :func:`register_atomic_backend` (idempotent) is called by the
hook and by :func:`vision_mtl.engine.register_all_modules`.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from vision_mtl.registry import HOOKS
from vision_mtl.utils import allow_checkpoint_types, atomic_write_bytes


class AtomicLocalBackend(LocalBackend):
    """mmengine's LocalBackend whose ``put``/``put_text`` never leave a partial file."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


def register_atomic_backend() -> None:
    """Make ``backend_args=dict(backend='atomic_local')`` resolve to :class:`AtomicLocalBackend`."""
    register_backend("atomic_local", AtomicLocalBackend, force=True)


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
      so fine-tuned pruned checkpoints rebuild their architecture like ``pruned.pth`` does; a
      quantization-aware model's QAT record (``model.qat_record``) likewise.
    """

    def __init__(self, **kwargs) -> None:
        register_atomic_backend()
        allow_checkpoint_types()  # how its message hub state is pickled and read back
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
        for key in ("pruning", "qat"):
            record = getattr(model, f"{key}_record", None)
            if record is not None:
                checkpoint.setdefault("meta", {})[key] = record

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
