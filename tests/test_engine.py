"""Checkpoint plumbing: atomic writes and weights_only loading of mmengine's history buffers."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer

from vision_mtl.engine import AtomicLocalBackend, register_all_modules
from vision_mtl.utils import atomic_write_bytes


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "ckpt.pth"
    atomic_write_bytes(b"first", target)
    atomic_write_bytes(b"second", target)
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.pth"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "ckpt.pth"
    target.write_bytes(b"good")

    with pytest.raises(TypeError):
        atomic_write_bytes(object(), target)  # type: ignore[arg-type]
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_config_backend_is_atomic(tmp_path):
    register_all_modules()
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend="atomic_local"))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put_text("iter_4.pth", tmp_path / "last_checkpoint")
    assert (tmp_path / "last_checkpoint").read_text() == "iter_4.pth"


def test_message_hub_state_loads_with_weights_only():
    register_all_modules()
    hub = MessageHub.get_instance("vision_mtl_test_hub")
    for value in (1.0, 2.5, 4.0):
        hub.update_scalar("train/loss", value)
    buffer = io.BytesIO()
    torch.save({"message_hub": hub.state_dict(), "w": torch.ones(2)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    restored = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(restored, HistoryBuffer)
    np.testing.assert_allclose(restored.data[0], [1.0, 2.5, 4.0])
    assert restored.mean() == pytest.approx(2.5)
    assert restored.max_length == hub.log_scalars["train/loss"].max_length


IMPORT_PROBE = """
import copyreg, sys
import torch
from mmengine.fileio.backends import backends
from mmengine.logging.history_buffer import HistoryBuffer
before = set(backends)
import vision_mtl, vision_mtl.tasks, vision_mtl.engine, vision_mtl.datasets, vision_mtl.models
assert set(backends) == before, set(backends) - before
# (torch adds its own DTensor types to the safe globals when those modules load: not ours)
assert HistoryBuffer not in torch.serialization.get_safe_globals()
assert HistoryBuffer not in copyreg.dispatch_table
assert "cityscapesscripts" not in sys.modules, "datasets imported cityscapesscripts"
vision_mtl.engine.register_all_modules()
vision_mtl.engine.register_all_modules()  # idempotent
assert "atomic_local" in backends and HistoryBuffer in copyreg.dispatch_table
assert HistoryBuffer in torch.serialization.get_safe_globals()
print("ok")
"""


def test_imports_have_no_side_effects_and_setup_is_explicit():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
