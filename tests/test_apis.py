"""Entry points fail clearly on bad input: configs, checkpoints, images, flags."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import QUICKSTART, TINY_OPTIONS

from vision_mtl.apis import inference, init_model, load_config
from vision_mtl.utils import resolve_checkpoint


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(tmp_path / "nope.py")


def test_work_dir_defaults_to_config_stem():
    assert load_config(QUICKSTART).work_dir == f"work_dirs/{QUICKSTART.stem}"


def test_checkpoint_resolution(tmp_path):
    ckpt = tmp_path / "iter_4.pth"
    ckpt.write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(ckpt))
    assert resolve_checkpoint(tmp_path) == str(ckpt)
    assert resolve_checkpoint(tmp_path / "last_checkpoint") == str(ckpt)
    ckpt.unlink()
    with pytest.raises(FileNotFoundError, match="points to .*iter_4.pth"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        resolve_checkpoint(tmp_path / "missing.pth")


def test_inference_rejects_bad_images(tmp_path):
    model = init_model(load_config(QUICKSTART, dict(TINY_OPTIONS)), device="cpu")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        inference(model, tmp_path / "absent.png")
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        inference(model, np.zeros((8, 8), np.float32))
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(
        ValueError, match=r"^image 1 must be H×W×3 uint8 RGB, got \(8, 8\) float32$"
    ):
        inference(model, [good, np.zeros((8, 8), np.float32)], mode="resize")
    with pytest.raises(ValueError, match=r"inference mode 'crop' is unknown; expected one of"):
        inference(model, good, mode="crop")
