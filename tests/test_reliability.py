"""Nothing lost, nothing silently wrong: crash-safe retention, locked work dirs, strict loading,
guarded steps, honest resume, validated overrides — each case as a careless user met it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, ROOT, TINY_OPTIONS, load_tool

from vision_mtl.apis import build_train_runner, init_model, load_config, write_json
from vision_mtl.engine import CheckpointMismatchError, WorkDirLockedError
from vision_mtl.utils import atomic_write_bytes, read_checkpoint, resolve_checkpoint

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))


def _tiny(work: Path, **extra):
    return load_config(QUICKSTART, {**TINY_OPTIONS, **extra}, work_dir=str(work))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained 4 iterations by tools/train.py: (config file, work dir)."""
    root = tmp_path_factory.mktemp("trained")
    cfg = _tiny(root / "work")
    config = root / "tiny.py"
    cfg.dump(str(config))
    load_tool("train").main([str(config), "--work-dir", str(root / "work")])
    return config, root / "work"


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"child exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("child never reached the point to kill it at")
        time.sleep(0.1)


# ---------------------------------------------------------------- 1. retention after the save
CHILD_TRAIN = """
import os, sys, time
from pathlib import Path
from conftest import QUICKSTART, TINY_OPTIONS
from vision_mtl.apis import build_train_runner, load_config

marker, work = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    # Stall the save of iter_4.pth after its bytes are on disk, before the rename.
    if os.path.basename(str(src)).startswith(".iter_4.pth."):
        marker.touch()
        time.sleep(600)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
options = dict(TINY_OPTIONS, **{"default_hooks.checkpoint.max_keep_ckpts": 1})
build_train_runner(load_config(QUICKSTART, options, work_dir=work)).train()
"""


def test_kill_during_save_with_max_keep_one_leaves_a_checkpoint(tmp_path, capfd, caplog):
    work, marker = tmp_path / "work", tmp_path / "saving"
    script = tmp_path / "child.py"
    script.write_text(CHILD_TRAIN)
    child = subprocess.Popen([sys.executable, str(script), str(marker), str(work)], env=ENV)
    _wait_for(marker, child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # The pointer names a checkpoint that exists and loads (mmengine deleted it before saving).
    kept = Path(resolve_checkpoint(work))
    assert kept.name == "iter_2.pth" and read_checkpoint(kept)["meta"]["iter"] == 2
    stale = list(work.glob(".iter_4.pth.*.tmp"))
    assert len(stale) == 1
    # The next run resumes, removes the partial file, saves iter_4 and only then drops iter_2.
    options = {**TINY_OPTIONS, "default_hooks.checkpoint.max_keep_ckpts": 1}
    runner = build_train_runner(load_config(QUICKSTART, options, str(work)), resume=True)
    runner.train()
    assert runner.iter == 4 and not stale[0].exists()
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_4.pth"]
    assert Path(resolve_checkpoint(work)).name == "iter_4.pth"
    assert "taking over the work dir lock" in caplog.text  # the killed run's lock
    out = capfd.readouterr()
    assert "partial file left by an interrupted save" in out.out + out.err


def test_retention_continues_across_a_resume(trained, tmp_path):
    """The kept-checkpoint window is restored on resume: old files go, only the last two stay."""
    config, work = trained
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    assert sorted(p.name for p in copy.glob("iter_*.pth")) == ["iter_2.pth", "iter_4.pth"]
    cfg = load_config(config, {"train_cfg.max_iters": 8, "train_cfg.val_interval": 8}, str(copy))
    build_train_runner(cfg, resume=True).train()
    assert sorted(p.name for p in copy.glob("iter_*.pth")) == ["iter_6.pth", "iter_8.pth"]
    assert read_checkpoint(copy / "iter_8.pth")["message_hub"]["runtime_info"]["keep_ckpt_ids"] == [
        6,
        8,
    ]


# ---------------------------------------------------------------- 2. one training per work dir
def test_second_training_in_a_work_dir_is_refused_and_a_dead_holders_lock_taken_over(
    trained, tmp_path, caplog
):
    config, _ = trained
    work = tmp_path / "work"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from vision_mtl.engine import WorkDirLock; "
            "WorkDirLock(sys.argv[1]).acquire(); open(sys.argv[2], 'w').close(); time.sleep(600)",
            str(work),
            str(tmp_path / "locked"),
        ],
        env=ENV,
    )
    try:
        _wait_for(tmp_path / "locked", holder)
        with pytest.raises(
            WorkDirLockedError, match=rf"in use by another training \(pid {holder.pid}"
        ):
            load_tool("train").main([str(config), "--work-dir", str(work)])
        assert sorted(p.name for p in work.iterdir()) == [".lock"]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    load_tool("train").main([str(config), "--work-dir", str(work)])
    assert (work / "iter_4.pth").is_file() and not (work / ".lock").exists()
    assert f"left by pid {holder.pid}, which is no longer running" in caplog.text


# ---------------------------------------------------------------- 5. strict loading
def test_test_tool_refuses_a_checkpoint_of_another_width(trained, tmp_path):
    config, work = trained
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*decoder") as err:
        load_tool("test").main(
            [str(config), str(work / "iter_4.pth"), "--cfg-options", "model.decoder.channels=24"]
        )
    assert str(work / "iter_4.pth") in str(err.value)


def test_test_tool_refuses_a_checkpoint_of_another_decoder(trained):
    config, work = trained
    options = ["model.decoder.type=TaskExpertDecoder", "model.decoder.channels=16"]
    with pytest.raises(CheckpointMismatchError, match=r"missing key.*unexpected key"):
        load_tool("test").main([str(config), str(work / "iter_4.pth"), "--cfg-options", *options])


def test_partial_load_is_explicit(trained, tmp_path):
    config, work = trained
    cfg = load_config(config)
    cfg.model.tasks = {"semseg": dict(num_classes=7)}  # a single-task subset
    cfg.test_dataloader.dataset.tasks = ["semseg"]
    cfg.test_evaluator = dict(type="MultiTaskMetric", tasks=["semseg"])
    subset = tmp_path / "semseg_only.py"
    cfg.dump(str(subset))
    argv = [str(subset), str(work / "iter_4.pth"), "--work-dir", str(tmp_path / "test")]
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key.*heads\.depth"):
        load_tool("test").main(argv)
    columns = load_tool("test").main([*argv, "--partial-load"])
    assert "semseg/mIoU" in columns["model"]
    assert not any(key.startswith("depth") for key in columns["model"])


def test_init_model_and_export_load_strictly(trained, tmp_path):
    config, work = trained
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch"):
        init_model(config, work / "iter_4.pth", "cpu", {"model.decoder.channels": 24})
    with pytest.raises(CheckpointMismatchError):
        load_tool("export").main(
            [
                str(config),
                str(work / "iter_4.pth"),
                "--out",
                str(tmp_path / "onnx"),
                "--cfg-options",
                "model.decoder.channels=24",
            ]
        )
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())


def test_pruned_checkpoints_carry_their_record_through_fine_tuning(trained, tmp_path):
    from vision_mtl.compress import prune
    from vision_mtl.workflows.pruning_steps import save_pruned_checkpoint

    config, work = trained
    model = init_model(config, work / "iter_4.pth", "cpu")
    protected = load_config(config).pruning.protected  # EfficientViT's attention stays whole
    record = prune(model, torch.zeros(1, 3, 32, 64), 0.3, protected=protected, round_to=None)
    pruned = save_pruned_checkpoint(model, record, tmp_path / "pruned.pth")
    # Without its record a pruned checkpoint does not fit the config's model: an error.
    bare = read_checkpoint(pruned)
    del bare["meta"]["pruning"]
    torch.save(bare, tmp_path / "bare.pth")
    with pytest.raises(CheckpointMismatchError, match=r"pruned without its record"):
        load_tool("test").main([str(config), str(tmp_path / "bare.pth")])
    # Fine-tuning writes checkpoints that carry the record, so test.py rebuilds the pruned model.
    cfg = load_config(config, {"train_cfg.max_iters": 2}, str(tmp_path / "finetune"))
    cfg.model.pruning, cfg.load_from = record, str(pruned)
    build_train_runner(cfg).train()
    finetuned = tmp_path / "finetune" / "iter_2.pth"
    assert read_checkpoint(finetuned)["meta"]["pruning"] == record
    metrics = load_tool("test").main([str(config), str(tmp_path / "finetune")])["model"]
    assert np.isfinite(metrics["semseg/mIoU"])


def test_resume_with_another_width_names_the_keys_not_adam(trained, tmp_path):
    config, work = trained
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    cfg = load_config(config, {"model.decoder.channels": 24, "train_cfg.max_iters": 6}, str(copy))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch"):
        build_train_runner(cfg, resume=True).train()


# ---------------------------------------------------------------- 6. finite loss, NaN gradient
def test_non_finite_gradient_stops_before_the_update(tmp_path):
    # A loss weight of 1e36 keeps the loss finite while the gradient norm overflows; before the
    # check, iteration 2's checkpoint held NaN in 102 of 174 tensors.
    cfg = _tiny(tmp_path / "work", **{"model.tasks.depth.loss_weight": 1e36})
    runner = build_train_runner(cfg)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient.*every loss was finite"):
        runner.train()
    for path in (tmp_path / "work").glob("iter_*.pth"):
        state = read_checkpoint(path)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# ---------------------------------------------------------------- 7. resume
def test_resume_with_nothing_to_resume_is_an_error_and_auto_starts_afresh(trained, tmp_path):
    config, _ = trained
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match=r"nothing to resume in work dir .*--resume auto"):
        load_tool("train").main([str(config), "--work-dir", str(empty), "--resume"])
    assert not empty.exists() or not list(empty.glob("iter_*.pth"))
    load_tool("train").main([str(config), "--work-dir", str(empty), "--resume", "auto"])
    assert (empty / "iter_4.pth").is_file()


def test_a_copied_work_dir_resumes_from_its_own_checkpoints(trained, tmp_path):
    config, work = trained
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    assert Path(resolve_checkpoint(copy)) == copy / "iter_4.pth"  # not the source's file
    cfg = load_config(config, {"train_cfg.max_iters": 6}, str(copy))
    runner = build_train_runner(cfg, resume=True)
    assert Path(runner.cfg.load_from) == copy / "iter_4.pth"


# ---------------------------------------------------------------- 10. overrides
def test_unknown_top_level_override_is_an_error_with_close_matches(trained):
    config, _ = trained
    with pytest.raises(KeyError, match=r"'train_cfgs'.*did you mean 'train_cfg'"):
        load_tool("train").main([str(config), "--cfg-options", "train_cfgs.max_iters=1"])


# ---------------------------------------------------------------- 11. strict JSON
def test_metrics_json_is_strict_json(tmp_path):
    path = tmp_path / "metrics.json"
    write_json({"model": {"depth/rmse": float("nan"), "semseg/mIoU": 50.0}}, path)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["model"] == {"depth/rmse": None, "semseg/mIoU": 50.0}
    assert data["non_finite"] == {"model.depth/rmse": "nan"}


# ---------------------------------------------------------------- errors that name the problem
def test_a_file_that_is_not_a_checkpoint_is_named(trained, tmp_path):
    config, _ = trained
    legacy = tmp_path / "legacy.pth"
    torch.save({"state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    for path in (legacy, text):
        with pytest.raises(ValueError, match=rf"{path.name}' is not a PyTorch checkpoint"):
            load_tool("test").main([str(config), str(path)])
        with pytest.raises(ValueError, match=rf"{path.name}' is not a PyTorch checkpoint"):
            init_model(config, path, "cpu")


def test_fewer_model_classes_than_dataset_labels_fail_before_training(tmp_path):
    runner = build_train_runner(_tiny(tmp_path / "w", **{"model.tasks.semseg.num_classes": 5}))
    with pytest.raises(ValueError, match=r"predicts 5 classes .* labels 7.*num_classes=7"):
        runner.train()
    assert runner.iter == 0


@pytest.mark.parametrize(
    "override, message",
    [
        ({"model.decoder.channels": "abc"}, r"BaselineDecoder: channels must be a positive"),
        ({"optim_wrapper.optimizer.lr": 1e39}, r"optimizer\.lr must be a positive number .*1e\+39"),
    ],
)
def test_bad_settings_are_named(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        build_train_runner(_tiny(tmp_path / "w", **override)).train()


# ---------------------------------------------------------------- file permissions
def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(b"x", tmp_path / "a.json")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "a.json", 0o604)
        atomic_write_bytes(b"y", tmp_path / "a.json")  # replacing keeps the file's mode
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(old)


# ---------------------------------------------------------------- 3./4. outputs stay put
def test_make_synthscenes_refuses_a_non_empty_target_unless_forced(tmp_path):
    out = tmp_path / "data"
    argv = ["--layout", "nyud", "--out", str(out), "--num", "1", "--size", "16", "24"]
    load_tool("make_synthscenes").main(argv)
    split = (out / "gt_sets" / "train.txt").read_text()
    with pytest.raises(SystemExit):
        load_tool("make_synthscenes").main([*argv[:-3], "--num", "2", "--size", "16", "24"])
    assert (out / "gt_sets" / "train.txt").read_text() == split  # untouched
    load_tool("make_synthscenes").main([*argv, "--seed", "1", "--force"])


def test_prediction_pictures_cannot_be_written_outside_the_show_dir(tmp_path):
    from vision_mtl.engine import PredictionGridHook

    class Model:
        num_classes = {}

    class Runner:
        model = Model()

    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    hook = PredictionGridHook(str(tmp_path / "show"))
    sample = dict(meta=dict(name=str(tmp_path / "victim")), pred={}, gt=None)
    batch = dict(inputs=[torch.zeros(3, 4, 4)])
    with pytest.raises(ValueError, match=r"not a relative name"):
        hook.after_test_iter(Runner(), 0, batch, [sample])
    assert victim.read_bytes() == b"precious"
