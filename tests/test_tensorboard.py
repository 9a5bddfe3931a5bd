"""The ``tensorboard`` switch: a tiny real run read back with tensorboard's own reader.

Losses, learning rate and validation metrics must reach the event file through mmengine's
LoggerHook at the steps they were logged, with a picture of the validation predictions at each
validation; the switch off writes no event file; a bad value and a missing package fail while
the config loads; a visualizer of the user's keeps its backends.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import QUICKSTART, TINY_OPTIONS, load_tool
from mmengine.registry import VISUALIZERS

from vision_mtl.apis import load_config
from vision_mtl.engine.tensorboard import (
    BACKEND,
    GRID_TAG,
    ValPredictionGridHook,
    stack_grids,
    with_tensorboard_backend,
)

TASKS = ("semseg", "depth", "normals", "edge")
LOSSES = ["loss", *(f"loss_{t}" for t in TASKS)]
METRICS = ["semseg/mIoU", "depth/rmse", "normals/mean", "edge/odsF_approx"]


def _train(tmp_path: Path, name: str, *options: str) -> Path:
    """Train the tiny config through tools/train.py; returns the work dir.

    The config is dumped under its own ``name``: mmengine shares the visualizer and message hub
    of runs whose config file name and start second agree.
    """
    config = tmp_path / f"{name}.py"
    load_config(QUICKSTART, dict(TINY_OPTIONS)).dump(str(config))
    work = tmp_path / f"work_{name}"
    argv = [str(config), "--work-dir", str(work)]
    load_tool("train").main([*argv, "--cfg-options", *options] if options else argv)
    return work


def _events(work: Path) -> list[Path]:
    return sorted(work.rglob("events.out.tfevents.*"))


def _read(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def _grey_bands(picture: np.ndarray) -> int:
    """How many runs of all-grey rows (the separators of stack_grids) the picture holds."""
    grey = (picture == 128).all(axis=(1, 2))
    return int(np.count_nonzero(grey[1:] & ~grey[:-1]) + grey[0])


def test_losses_lr_metrics_and_predictions_reach_tensorboard(tmp_path):
    work = _train(tmp_path, "tb_on", "tensorboard=True", "train_cfg.val_interval=2")
    (event_file,) = _events(work)
    assert event_file.parent.name == "vis_data"  # <work_dir>/<timestamp>/vis_data/
    events = _read(event_file)
    tags = events.Tags()

    # Training scalars every 2 iterations (default_hooks.logger.interval), metrics at each
    # validation (val_interval 2): steps 2 and 4.
    for tag in [*LOSSES, "lr", *METRICS]:
        assert tag in tags["scalars"], (tag, tags["scalars"])
        assert [e.step for e in events.Scalars(tag)] == [2, 4], tag
    lr = load_config(tmp_path / "tb_on.py").optim_wrapper.optimizer.lr
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([lr, lr])
    # The same numbers as mmengine's own scalars.json: what was logged, not something else.
    logged = [json.loads(line) for line in (event_file.parent / "scalars.json").open()]
    for tag in ["loss", "semseg/mIoU", "depth/rmse"]:
        expected = [r[tag] for r in logged if tag in r]
        assert [e.value for e in events.Scalars(tag)] == pytest.approx(expected, rel=1e-6), tag

    # One picture per validation: 4 images of 32x64, each input + 4 task columns enlarged x6.
    assert tags["images"] == [GRID_TAG]
    images = events.Images(GRID_TAG)
    assert [i.step for i in images] == [2, 4]
    for image in images:
        picture = cv2.imdecode(np.frombuffer(image.encoded_image_string, np.uint8), 1)
        assert picture.shape == (image.height, image.width, 3)
        assert image.width == (1 + len(TASKS)) * 64 * 6
        assert 4 * 2 * 32 * 6 < image.height < 4 * 1000  # gt + prediction rows per image
        assert _grey_bands(picture) == 3  # four images stacked
        assert picture.std() > 20  # drawn, not blank


def test_switch_off_writes_no_event_file(tmp_path):
    work = _train(tmp_path, "tb_off", "train_cfg.max_iters=2")
    assert _events(work) == []
    assert list(work.glob("*/vis_data/scalars.json"))  # the run did log, locally
    dumped = load_config(next(work.glob("tb_off.py")))
    assert dumped.tensorboard is False and "visualizer" not in dumped
    assert "ValPredictionGridHook" not in [h["type"] for h in dumped.custom_hooks]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_value_other_than_true_or_false_is_refused(value):
    with pytest.raises(ValueError, match=rf"tensorboard={value!r} .*expected True or False"):
        load_config(QUICKSTART, {"tensorboard": value})


def test_missing_tensorboard_fails_while_loading(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install tensorboard"):
        load_config(QUICKSTART, {"tensorboard": True})
    assert load_config(QUICKSTART).tensorboard is False  # off: not needed


USER_VISUALIZER = """
_base_ = ["{quickstart}"]
visualizer = dict(
    type="Visualizer", vis_backends=[dict(type="LocalVisBackend", img_save_dir="pictures")]
)
"""


def test_a_user_visualizer_keeps_its_backends(tmp_path):
    config = tmp_path / "tb_user.py"
    config.write_text(USER_VISUALIZER.format(quickstart=QUICKSTART))
    cfg = load_config(config, {"tensorboard": True})
    backends = cfg.visualizer.vis_backends
    assert backends == [dict(type="LocalVisBackend", img_save_dir="pictures"), dict(type=BACKEND)]
    # A dumped run config loads to the same thing: no second backend, no second hook.
    cfg.dump(str(tmp_path / "tb_user_dumped.py"))
    again = load_config(tmp_path / "tb_user_dumped.py")
    assert again.visualizer.vis_backends == backends
    assert [h["type"] for h in again.custom_hooks].count("ValPredictionGridHook") == 1
    # mmengine builds it: both backends, the user's with its own arguments.
    name = f"tb_user_{tmp_path.name}"
    built = VISUALIZERS.build(dict(cfg.visualizer, name=name, save_dir=str(tmp_path)))
    assert built.get_backend("LocalVisBackend") is not None
    assert built.get_backend(BACKEND) is not None
    built.add_image("probe", np.zeros((4, 4, 3), np.uint8))
    built.close()
    assert (tmp_path / "vis_data" / "pictures" / "probe_0.png").is_file()
    assert _events(tmp_path / "vis_data")


def test_default_and_odd_visualizers():
    assert with_tensorboard_backend(None)["vis_backends"] == [
        dict(type="LocalVisBackend"),
        dict(type=BACKEND),
    ]
    scoped = dict(type="Visualizer", vis_backends=dict(type=f"mmengine.{BACKEND}"))
    assert with_tensorboard_backend(scoped)["vis_backends"] == [scoped["vis_backends"]]
    with pytest.raises(TypeError, match=r"the.py: visualizer must be a dict"):
        with_tensorboard_backend("Visualizer", "the.py")
    with pytest.raises(ValueError, match="max_images must be a positive integer, got 0"):
        ValPredictionGridHook(max_images=0)


def test_stack_grids_pads_narrow_pictures_and_separates_them():
    wide = np.zeros((3, 5, 3), np.uint8)
    narrow = np.full((2, 4, 3), 7, np.uint8)
    picture = stack_grids([wide, narrow], gap=1)
    assert picture.shape == (3 + 1 + 2, 5, 3)
    assert (picture[3] == 128).all() and (picture[4:, 4] == 255).all()
    assert (picture[4:, :4] == 7).all() and (picture[:3] == 0).all()


def test_a_picture_that_cannot_be_drawn_is_a_warning_not_a_crash(capsys):
    import torch
    from mmengine.logging import MMLogger

    class Visualizer:
        def __init__(self) -> None:
            self.images: list = []

        def add_image(self, *args, **kwargs):
            self.images.append((args, kwargs))

    runner = type("Runner", (), {})()
    runner.model, runner.visualizer, runner._train_loop = torch.nn.Module(), Visualizer(), None
    hook = ValPredictionGridHook()
    batch = {"inputs": torch.zeros(1, 3, 4, 4, dtype=torch.uint8)}
    outputs = [{"meta": {}, "pred": {"no_such_task": torch.zeros(4, 4)}}]
    MMLogger.get_instance("tb_warning_test")  # print_log(logger="current") needs one
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, batch, outputs)
    hook.after_val_epoch(runner)
    assert hook.broken and runner.visualizer.images == []
    logged = capsys.readouterr()
    assert "could not draw the validation predictions (KeyError" in logged.out + logged.err
