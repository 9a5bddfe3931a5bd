"""tools/prune.py refuses bad settings in seconds, before the minutes of evaluation and pruning.

Every case runs the real tool on the tiny quickstart (real config, real checkpoint) and checks
the one-sentence error and that nothing was written; two run it as a subprocess, as a user does.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, load_tool
from test_pruning import tiny_config_and_checkpoint

from vision_mtl.apis import init_model
from vision_mtl.compress import prune
from vision_mtl.workflows.pruning_steps import save_pruned_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny quickstart config, its unpruned checkpoint and a pruned one."""
    tmp = tmp_path_factory.mktemp("prune_cli")
    config, checkpoint = tiny_config_and_checkpoint(tmp)
    model = init_model(config, checkpoint, device="cpu")
    patterns = list(model.cfg.pruning.protected)
    record = prune(model, torch.zeros(1, 3, 32, 64), 0.3, protected=patterns, round_to=None)
    pruned = save_pruned_checkpoint(model, record, tmp / "pruned.pth")
    return config, checkpoint, pruned


def _argv(config, checkpoint, out, *extra: str) -> list[str]:
    return [str(config), str(checkpoint), "--ratio", "0.3", "--out", str(out), *extra]


@pytest.mark.parametrize(
    "extra,message",
    [
        # --layer-ratio: each item NAME=R, R in (0, 1), each layer once, in the model
        (["--layer-ratio", "decoder.x"], r"item 'decoder.x' is not NAME=R: a layer name, '='"),
        (["--layer-ratio", "=0.5"], r"item '=0.5' is not NAME=R"),
        (["--layer-ratio", "decoder.x=half"], r"item 'decoder.x=half' is not NAME=R"),
        (["--layer-ratio", "decoder.x=1.5"], r"'decoder.x=1.5': the ratio must be in \(0, 1\)"),
        (["--layer-ratio", "decoder.x=nan"], r"the ratio must be in \(0, 1\), got nan"),
        (["--layer-ratio", "a=0.5", "a=0.2"], r"names layer 'a' twice"),
        (["--layer-ratio", "decoder.none=0.5"], r"--layer-ratio: layer 'decoder.none' .* not in"),
        # counts and ranges
        (["--finetune-iters", "-1"], r"--finetune-iters must be an integer >= 0 \(0: no fine"),
        (["--iterative-steps", "0"], r"--iterative-steps must be an integer >= 1, got 0"),
        (["--grad-batches", "0"], r"--grad-batches must be an integer >= 1, got 0"),
        (["--latency-runs", "0"], r"--latency-runs must be an integer >= 1, got 0"),
        (["--round-to", "-16"], r"--round-to must be an integer >= 0 \(0: exact"),
        (["--head-ratio", "1"], r"--head-ratio must be in \[0, 1\)"),
        (["--importance", "greedy", "--greedy-budget", "0"], r"--greedy-budget must be a positive"),
        # what the model and config allow
        (["--head-ratio", "0.5"], r"--head-ratio 0.5: .*no timm attention block"),
        (["--cfg-options", "test_evaluator=None"], r"does not set test_evaluator, which this run"),
        (
            ["--finetune-iters", "8", "--cfg-options", "param_scheduler.0.by_epoch=True"],
            r"--finetune-iters 8 with config .*'LinearLR' counts epochs",
        ),
        (
            ["--finetune-iters", "8", "--cfg-options", "param_scheduler.1.type=PolyLRR"],
            r"--finetune-iters 8 .*schedule for 8 iterations cannot run.*PolyLRR",
        ),
    ],
)
def test_bad_settings_fail_naming_the_flag_before_writing(tiny, tmp_path, extra, message):
    config, checkpoint, _ = tiny
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=message):
        load_tool("prune").main(_argv(config, checkpoint, out, *extra))
    assert not out.exists()


def test_bad_paths_and_checkpoints_fail_naming_them(tiny, tmp_path):
    config, checkpoint, pruned = tiny
    tool = load_tool("prune")
    out = tmp_path / "out"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit, match=r"--out '.*file/out' cannot be a directory: .* is a file"):
        tool.main(_argv(config, checkpoint, blocker / "out"))
    with pytest.raises(SystemExit, match=r"config file '.*missing.py' does not exist"):
        tool.main(_argv(tmp_path / "missing.py", checkpoint, out))
    with pytest.raises(SystemExit, match=r"checkpoint '.*missing.pth' does not exist"):
        tool.main(_argv(config, tmp_path / "missing.pth", out))
    # A pruned checkpoint's record cannot be extended: pruning it again would write a record
    # that rebuilds nothing (found only when fine-tuning or testing it).
    with pytest.raises(SystemExit, match="is already pruned .* records do not chain"):
        tool.main(_argv(config, pruned, out))
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--layer-ratio", "decoder.fuse", "--finetune-iters", "8"],
            "--layer-ratio item 'decoder.fuse' is not NAME=R",
        ),
        (  # before the fix: minutes of pruning, pruned.pth written, then mmengine's error
            ["--finetune-iters", "8", "--cfg-options", "param_scheduler.1.by_epoch=True"],
            "'PolyLR' counts epochs",
        ),
    ],
)
def test_the_command_line_fails_in_seconds_with_one_sentence(tiny, tmp_path, extra, message):
    config, checkpoint, _ = tiny
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "tools/prune.py"), *_argv(config, checkpoint, out)]
    start = time.monotonic()
    result = subprocess.run(
        command + extra, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "| stage |" not in result.stdout  # no evaluation, pruning or report
    assert not out.exists()
    assert elapsed < 60  # the interpreter and torch start; no model is evaluated
