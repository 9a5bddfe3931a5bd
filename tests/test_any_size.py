"""Issue 17: inference at any size (``resize``, ``slide``) and batched inference.

A tiny quickstart model is exported by tools/export.py at its tiny canvas (32x64); a real
photograph (scikit-image's astronaut, 512x512, plus a non-square 300x450 crop of it) is
predicted at native size by :func:`vision_mtl.apis.inference` (PyTorch) and by
``deploy/infer.py`` (ONNX Runtime), which share the planning and merging code of
:mod:`vision_mtl.runtime.tiling`. The two must agree within the export's tolerance.

Tolerance: the export's parity gate bounds the raw ONNX Runtime / PyTorch difference at 1e-4
(tools/export.py --atol). Merging only forms convex combinations of raw outputs (linear
resampling in ``resize``, averaging in ``slide``), so merged raw outputs differ by no more than
the raw ones; decoding is 1-Lipschitz or flatter except normalization (slope 1/|v|, modest for
this head), so decoded values are compared at 1e-4 too. Class ids must be equal except where
the top two merged logits are within twice the largest raw difference (a tie either path may
break either way).
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch
from conftest import load_tool
from test_deploy_standalone import _varied_checkpoint
from test_export import _tiny_config, load_tool_from_deploy

from vision_mtl.apis import inference, init_model
from vision_mtl.runtime import OrtRunner, load_deployment
from vision_mtl.runtime.decode import DecodeRule
from vision_mtl.runtime.tiling import merge, plan_image, predict_images, resize_linear
from vision_mtl.tasks import get_task

skimage_data = pytest.importorskip("skimage.data")

ATOL = 1e-4
IDENTITY = DecodeRule("identity", (), "raw outputs", "gray")  # merged logits, undecoded


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The exported tiny model, the PyTorch model, and the photographs as PNG files."""
    tmp = tmp_path_factory.mktemp("any_size")
    config = _tiny_config(tmp)
    checkpoint = _varied_checkpoint(config, tmp)
    out = tmp / "out"
    load_tool("export").main(
        [str(config), str(checkpoint), "--out", str(out), "--parity-samples", "1"]
    )
    photo = skimage_data.astronaut()
    images = {"astronaut": photo, "crop": photo[40:340, 20:470]}
    paths = {}
    for stem, rgb in images.items():
        paths[stem] = tmp / f"{stem}.png"
        assert cv2.imwrite(str(paths[stem]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    model = init_model(config, checkpoint, device="cpu")
    return model, out, images, paths, tmp


def _raw_merged(model, deployment, image, mode):
    """Merged semseg logits of both paths (H×W×C) and their largest raw difference."""
    canvas = deployment.canvas
    spec = deployment.sidecar["input"]
    runner = OrtRunner(deployment, providers=["CPUExecutionProvider"])
    rules = {"semseg": IDENTITY}

    def eager(batch):
        with torch.no_grad():
            return {t: v.numpy() for t, v in model(torch.from_numpy(batch), mode="tensor").items()}

    largest = 0.0

    def both(batch):
        nonlocal largest
        ort, pt = runner.run(batch), eager(batch)
        largest = max([largest] + [float(np.abs(ort[t] - pt[t]).max()) for t in ort])
        return ort

    merged = predict_images([image], both, canvas, spec["mean"], spec["std"], rules, mode)
    return merged[0]["semseg"], largest


@pytest.mark.parametrize("mode", ["resize", "slide"])
def test_pytorch_and_runtime_agree_at_native_size(setup, tmp_path, mode):
    model, out, images, paths, _ = setup
    deployment = load_deployment(out)
    classes = deployment.sidecar["num_classes"]["semseg"]
    pred = tmp_path / "pred"
    runtime = load_tool_from_deploy("infer").main(
        [str(out / "model.json"), *map(str, paths.values()), "--out", str(pred), "--mode", mode]
    )
    for stem, image in images.items():
        expected = inference(model, paths[stem], mode=mode)
        got = runtime[stem]
        h, w = image.shape[:2]
        assert set(got) == set(expected) == set(deployment.tasks)
        for task in deployment.tasks:
            saved = np.load(pred / f"{stem}_{task}.npy")
            np.testing.assert_array_equal(saved, got[task])
            assert saved.shape[:2] == (h, w) and saved.dtype == expected[task].dtype
            assert saved.shape == expected[task].shape
            if get_task(task).decode == "argmax":
                assert saved.dtype == np.int64
                assert saved.min() >= 0 and saved.max() < classes
                assert len(np.unique(saved)) > 1
                differ = saved != expected[task]
                if differ.any():
                    logits, largest = _raw_merged(model, deployment, image, mode)
                    top2 = np.sort(logits[differ], axis=-1)[:, -2:]
                    assert (top2[:, 1] - top2[:, 0]).max() <= 2 * largest, task
            else:
                np.testing.assert_allclose(saved, expected[task], rtol=0, atol=ATOL)
        normals = got["normals"]
        assert normals.shape == (h, w, 3)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
        assert 0 <= got["edge"].min() and got["edge"].max() <= 1
        assert got["depth"].min() >= 0


def test_pad_mode_refuses_a_large_photo_with_a_hint(setup, tmp_path):
    model, out, _, paths, _ = setup
    hint = "use mode 'resize' (scale to fit) or 'slide' (overlapping windows) instead of 'pad'"
    message = f"is 512x512, larger than the exported canvas 32x64; {hint}, or export with --shape"
    with pytest.raises(SystemExit, match=re.escape(message)):
        load_tool_from_deploy("infer").main(
            [str(out / "model.json"), str(paths["astronaut"]), "--out", str(tmp_path / "p")]
        )
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
    fixed = init_model(model.cfg, None, "cpu", {"model.data_preprocessor.size": (32, 64)})
    with pytest.raises(ValueError, match="larger than the model's canvas 32x64; use mode='resize'"):
        inference(fixed, paths["astronaut"])
    with pytest.raises(ValueError, match="inference mode 'tile' is unknown"):
        inference(fixed, paths["astronaut"], mode="tile")


def _torch_logits(model, image: np.ndarray, mode: str) -> np.ndarray:
    """Merged semseg logits (H×W×C) of PyTorch inference of one image, as ``inference`` runs it."""
    pre = model.data_preprocessor
    canvas = pre.batch_size_for([image.shape[:2]]) if mode == "pad" else (32, 64)

    def run(batch):
        with torch.no_grad():
            return {t: v.numpy() for t, v in model(torch.from_numpy(batch), mode="tensor").items()}

    mean, std = pre.mean.flatten().tolist(), pre.std.flatten().tolist()
    rules = {"semseg": IDENTITY}
    return predict_images([image], run, canvas, mean, std, rules, mode)[0]["semseg"]


@pytest.mark.parametrize("mode", ["pad", "resize", "slide"])
def test_batched_inference_equals_per_image(setup, mode):
    """One call on a list equals one call per image, to float32 rounding.

    Windows of several images share forward passes, and CPU kernels sum in an order that can
    depend on the batch size, so values agree to float32 rounding (within the export tolerance),
    and class ids exactly except at near-ties of the top two logits.
    """
    model, _, images, paths, _ = setup
    small = images["crop"][:20, :50]  # smaller than the canvas: padded in every mode
    arrays = [images["crop"], small, images["astronaut"][:90, :70]]
    inputs = [paths["crop"], small, arrays[2]]
    batched = inference(model, inputs, mode=mode, batch_size=5)
    assert isinstance(batched, list) and len(batched) == 3
    for item, array, together in zip(inputs, arrays, batched, strict=True):
        alone = inference(model, item, mode=mode)
        assert isinstance(alone, dict) and set(alone) == set(together)
        for task, value in alone.items():
            assert together[task].shape == value.shape and together[task].dtype == value.dtype
            if value.dtype == np.int64:
                differ = together[task] != value
                if differ.any():
                    top2 = np.sort(_torch_logits(model, array, mode)[differ], axis=-1)[:, -2:]
                    assert (top2[:, 1] - top2[:, 0]).max() <= ATOL, task
            else:
                np.testing.assert_allclose(together[task], value, rtol=0, atol=ATOL)


def test_plans_and_linear_resampling():
    assert plan_image((30, 60), (32, 64)).origins == ((0, 0),)
    resize = plan_image((400, 600), (96, 128), "resize")
    assert resize.scaled == (85, 128) and resize.size == (400, 600)
    slide = plan_image((100, 64), (32, 64), "slide", (20, 64))
    assert slide.origins == ((0, 0), (20, 0), (40, 0), (60, 0), (68, 0))
    with pytest.raises(ValueError, match=r"slide stride \[40, 64\] must be"):
        plan_image((100, 64), (32, 64), "slide", (40, 64))
    x = torch.randn(2, 5, 7)
    expected = torch.nn.functional.interpolate(
        x[None], size=(13, 4), mode="bilinear", align_corners=False
    )[0]
    np.testing.assert_allclose(resize_linear(x.numpy(), (13, 4)), expected.numpy(), atol=1e-6)
    # Slide: windows that all see the same logits average to those logits.
    plan = plan_image((50, 70), (32, 64), "slide")
    raw = np.ones((len(plan.origins), 2, 32, 64), np.float32)
    merged = merge(plan, {"t": raw}, {"t": IDENTITY})["t"]
    assert merged.shape == (50, 70, 2) and np.all(merged == 1)


def test_infer_stride_flag(setup, tmp_path):
    """``--stride`` sets slide's windows; it is refused for other modes and beyond the canvas."""
    model, out, images, paths, _ = setup
    infer = load_tool_from_deploy("infer")
    base = [str(out / "model.json"), str(paths["crop"]), "--out", str(tmp_path / "p")]
    result = infer.main([*base, "--mode", "slide", "--stride", "16", "32"])
    expected = inference(model, paths["crop"], mode="slide", stride=(16, 32))
    np.testing.assert_allclose(result["crop"]["depth"], expected["depth"], rtol=0, atol=ATOL)
    with pytest.raises(SystemExit, match="--stride applies to --mode slide only, not 'resize'"):
        infer.main([*base, "--mode", "resize", "--stride", "16", "32"])
    with pytest.raises(SystemExit, match=r"slide stride \[33, 32\] must be two positive integers"):
        infer.main([*base, "--mode", "slide", "--stride", "33", "32"])


def test_pictures_beside_and_over_the_input(setup, tmp_path):
    """``--picture side|overlay`` put the input in the PNG; hatch marks pixels with no value."""
    _, out, images, paths, _ = setup
    infer = load_tool_from_deploy("infer")
    base = [str(out / "model.json"), str(paths["crop"]), "--mode", "resize"]
    side = tmp_path / "side"
    infer.main([*base, "--out", str(side), "--picture", "side"])
    png = cv2.cvtColor(cv2.imread(str(side / "crop_semseg.png")), cv2.COLOR_BGR2RGB)
    assert png.shape == (300, 900, 3)
    np.testing.assert_array_equal(png[:, :450], images["crop"])
    plain = tmp_path / "plain"
    infer.main([*base, "--out", str(plain), "--picture", "overlay", "--alpha", "0"])
    pure = cv2.cvtColor(cv2.imread(str(plain / "crop_depth.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(pure, images["crop"])  # alpha 0: the input itself
    with pytest.raises(SystemExit):
        infer.main([*base, "--out", str(plain), "--alpha", "1.5"])


def test_a_video_becomes_an_annotated_video_with_frames_per_second(setup, tmp_path, capsys):
    model, out, images, _, _ = setup
    video = tmp_path / "walk.avi"
    frames = [np.roll(images["crop"], 7 * i, axis=1) for i in range(5)]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (450, 300))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    infer = load_tool_from_deploy("infer")
    argv = [str(out / "model.json"), str(video), "--out", str(tmp_path / "o"), "--mode", "resize"]
    stats = infer.main([*argv, "--video-task", "semseg", "--max-frames", "4"])
    assert stats["frames"] == 4 and stats["fps"] > 0
    assert re.search(r"4 frames, [\d.]+ frames/s end to end", capsys.readouterr().out)
    written = cv2.VideoCapture(str(tmp_path / "o" / "walk_semseg.avi"))
    count = 0
    while True:
        ok, frame = written.read()
        if not ok:
            break
        count += 1
        assert frame.shape == (300, 450, 3)
    assert count == 4
    with pytest.raises(SystemExit, match="--video-task 'sky' is not one of"):
        infer.main([*argv, "--video-task", "sky"])
    with pytest.raises(SystemExit, match="video .*missing.avi' does not exist"):
        infer.main([str(out / "model.json"), str(tmp_path / "missing.avi"), "--out", str(tmp_path)])
