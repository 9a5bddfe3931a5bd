"""Two real processes train the tiny config with DDP (gloo on CPU) and evaluate across ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
from conftest import ROOT, torchrun_train

from vision_mtl.engine import register_all_modules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_training_and_evaluation(tiny_cfg, tmp_path):
    """Launched the way users launch it: tools/dist_train.sh CONFIG 2 [options]."""
    config = tmp_path / "tiny.py"
    tiny_cfg.dump(str(config))
    work = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, PORT=str(_free_port()))
    cmd = [str(ROOT / "tools/dist_train.sh"), str(config), "2", "--work-dir", str(work)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    register_all_modules()  # the weights_only allow-list, whichever test ran first in this worker
    ckpt = torch.load(work / "iter_4.pth", map_location="cpu")
    assert ckpt["meta"]["iter"] == 4
    log = next(work.glob("*/*.log")).read_text()
    assert "Distributed training: True" in log and "GPU number: 2" in log  # world size 2
    # 8 val images at batch 4 over 2 ranks: one batch per rank, results gathered on rank 0
    assert "Iter(val) [1/1]" in log and "semseg/mIoU" in log
    assert "edge/odsF_approx" in log  # boundary counts from both ranks' worker pools


def test_non_finite_loss_stops_ddp_before_any_update(tiny_cfg, tmp_path):
    """The DDP train step bypasses the module's train_step; the guard must still hold."""
    config = tmp_path / "tiny.py"
    tiny_cfg.dump(str(config))
    work = tmp_path / "ddp_nan"
    done = torchrun_train(config, work, "--cfg-options", "model.tasks.depth.loss_weight=nan")
    assert done.returncode != 0
    assert "non-finite loss for task 'depth'" in done.stderr and "iteration 1" in done.stderr
    assert not list(work.glob("iter_*.pth"))
