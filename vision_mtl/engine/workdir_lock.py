"""One training per work directory: a lock file naming its holder.

Two trainings in one work dir interleave one log and delete each other's checkpoints (each
one's retention removes the other's files). :class:`WorkDirLock` creates ``<work_dir>/.lock``
exclusively, holding the owner's host, pid and process start time; a second run is refused with
a message naming the holder. A lock left by a process that no longer runs on this host (killed,
crashed, machine rebooted) is taken over, with a warning saying so. A lock from another host
cannot be checked from here: the message says how to remove it if that run is gone.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path

from mmengine.hooks import Hook

LOCK_NAME = ".lock"
logger = logging.getLogger(__name__)


class WorkDirLockedError(RuntimeError):
    """Another live run holds the work directory."""


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start_time: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if start_time is not None and _start_time(pid) not in (None, start_time):
        return False  # the pid was reused by a later process
    return True


def global_rank_from_env() -> int:
    """This process's rank as the launchers set it (torchrun, slurm, MPI); 0 when not launched."""
    for name in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class WorkDirLock:
    """An exclusive, stale-aware lock on a work directory (use as a context manager).

    Args:
        work_dir: the run's work directory (created if missing).
        enabled: ``False`` makes the lock a no-op (non-zero ranks of a distributed run: rank 0
            holds the lock for the whole run).
    """

    def __init__(self, work_dir: str | os.PathLike, enabled: bool | None = None) -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self.enabled = global_rank_from_env() == 0 if enabled is None else enabled
        self.held = False
        self.shared = False

    def _owner(self) -> dict:
        pid = os.getpid()
        return dict(
            host=socket.gethostname(), pid=pid, start_time=_start_time(pid), since=time.time()
        )

    def acquire(self) -> WorkDirLock:
        """Take the lock, taking over a stale one; :class:`WorkDirLockedError` if it is held."""
        if not self.enabled or self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_holder()
                if self.held:
                    return self
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._owner(), f)
            self.held = True
            atexit.register(self.release)  # a run that raises still frees its work dir
            return self
        raise WorkDirLockedError(f"could not take the work dir lock {str(self.path)!r}")

    def _check_holder(self) -> None:
        """Refuse a live holder; move a stale lock aside so the next attempt can take it."""
        try:
            holder = json.loads(self.path.read_text())
            host, pid = str(holder["host"]), int(holder["pid"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError, KeyError, TypeError):
            raise WorkDirLockedError(
                f"the work dir lock {str(self.path)!r} is unreadable; if no run uses this work "
                "dir, delete the file"
            ) from None
        me = self._owner()
        if host != me["host"]:
            raise WorkDirLockedError(
                f"work dir {str(self.path.parent)!r} is in use by pid {pid} on host {host!r} "
                f"(lock file {str(self.path)!r}); if that run has ended, delete the lock file"
            )
        if pid == me["pid"]:
            # This process holds it already (a second runner in one process): share it, and
            # leave its removal to the instance that created it.
            self.held, self.shared = True, True
            return
        if _alive(pid, holder.get("start_time")):
            raise WorkDirLockedError(
                f"work dir {str(self.path.parent)!r} is in use by another training (pid {pid} "
                f"on this host, lock file {str(self.path)!r}); wait for it to finish or choose "
                "another --work-dir"
            )
        stale = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, stale)
        except FileNotFoundError:
            return
        stale.unlink(missing_ok=True)
        # Python logging, not mmengine's: no Runner (and no run logger) exists yet.
        logger.warning(
            "taking over the work dir lock %r left by pid %d, which is no longer running",
            str(self.path),
            pid,
        )

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.held or self.shared:
            self.held = False
            return
        try:
            holder = json.loads(self.path.read_text())
            if int(holder.get("pid", -1)) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass
        self.held = False

    def __enter__(self) -> WorkDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class WorkDirLockHook(Hook):
    """Releases a :class:`WorkDirLock` when the run ends (registered by ``build_train_runner``)."""

    priority = "LOWEST"

    def __init__(self, lock: WorkDirLock) -> None:
        self.lock = lock

    def after_run(self, runner) -> None:
        self.lock.release()
