"""Issue 15: bad inputs to the export and deploy tools fail with one sentence, before any write.

Every case runs on a real tiny export (tools/export.py, one parity sample), real ONNX files and
ONNX Runtime sessions; the command-line cases run the scripts as subprocesses and check the exit
code, the one-line message and that the output directory gained nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import pytest
from conftest import ROOT, load_tool
from test_export import _checkpoint, _tiny_config, load_tool_from_deploy

from vision_mtl.export import DeploymentError, OrtRunner, export_onnx, load_deployment, verified
from vision_mtl.export.validate import DIGEST_KEY, file_sha256, load_onnx, seal_sidecar

sys.path.insert(0, str(ROOT / "deploy"))
from trt_runtime import (  # noqa: E402
    engine_sidecar_path,
    load_engine_deployment,
    make_engine_sidecar,
)

SINGLE_TASK = (
    "configs/single_task/baseline-semseg_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py"
)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The tiny 4-task quickstart model exported by tools/export.py, and a semseg-only config."""
    tmp = tmp_path_factory.mktemp("export_errors")
    config = _tiny_config(tmp)
    checkpoint = _checkpoint(config, tmp)
    out = tmp / "out"
    load_tool("export").main(
        [str(config), str(checkpoint), "--out", str(out), "--parity-samples", "1"]
    )
    return SimpleNamespace(
        config=config, checkpoint=checkpoint, out=out, single=_tiny_config(tmp, SINGLE_TASK)
    )


@pytest.fixture
def pair(export, tmp_path) -> Path:
    """A private copy of the exported pair, free to damage."""
    directory = tmp_path / "pair"
    directory.mkdir()
    for name in ("model.onnx", "model.json"):
        shutil.copy(export.out / name, directory / name)
    return directory


def run(script: str, *args) -> subprocess.CompletedProcess:
    """Run a repository script as a user would; returns the finished process."""
    command = [sys.executable, str(ROOT / script), *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_one_sentence(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The process failed with ``code`` and a single-line message, no traceback; returns it."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or code == 2, result.stderr  # argparse adds its usage lines
    return lines[-1]


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def contents(directory: Path) -> list[str]:
    """Every entry, hidden ones (staging directories, temporary files) included."""
    return sorted(p.name for p in directory.iterdir())


def reseal(pair: Path, **changes) -> dict:
    """Rewrite the pair's sidecar with ``changes`` and a valid digest (a deliberate edit)."""
    sidecar = json.loads((pair / "model.json").read_text())
    sidecar = seal_sidecar(dict(sidecar, **changes))
    (pair / "model.json").write_text(json.dumps(sidecar, indent=2))
    return sidecar


# 1. Two inputs with the same stem would write the same outputs.


def test_infer_refuses_two_images_with_the_same_stem(export, tmp_path):
    first = write_image(tmp_path / "a" / "img.png", 30, 60)
    second = write_image(tmp_path / "b" / "img.png", 20, 40, seed=1)
    out = tmp_path / "pred"
    message = assert_one_sentence(
        run("deploy/infer.py", export.out / "model.json", first, second, "--out", out)
    )
    assert f"images '{first}' and '{second}' would both write 'img_semseg.npy'" in message
    assert not out.exists()

    # Names differing only in case collide on case-insensitive file systems: refused too.
    infer = load_tool_from_deploy("infer")
    upper = write_image(tmp_path / "c" / "IMG.png", 20, 40, seed=2)
    with pytest.raises(SystemExit, match="would both write"):
        infer.main([str(export.out / "model.json"), str(first), str(upper), "--out", str(out)])
    assert not out.exists()

    # Distinct stems: every image gets its own outputs.
    other = write_image(tmp_path / "c" / "other.png", 20, 40, seed=3)
    results = infer.main([str(export.out), str(first), str(other), "--out", str(out)])
    assert set(results) == {"img", "other"}
    assert len(contents(out)) == 2 * 4 * 2  # images × tasks × (npy, png); no staging left
    assert np.load(out / "other_depth.npy").shape == (20, 40)


# 2. Every input is checked before anything is written, and the error names the file.


def test_infer_checks_every_image_before_writing(export, tmp_path):
    fits = write_image(tmp_path / "first.png", 30, 60)
    too_large = write_image(tmp_path / "second.png", 40, 70)
    out = tmp_path / "pred"
    (out / "keep").mkdir(parents=True)
    message = assert_one_sentence(
        run("deploy/infer.py", export.out / "model.json", fits, too_large, "--out", out)
    )
    assert message == (
        f"image '{too_large}' is 40x70, larger than the exported canvas 32x64; use mode 'resize' "
        "(scale to fit) or 'slide' (overlapping windows) instead of 'pad', or export with --shape"
    )
    assert contents(out) == ["keep"]

    infer = load_tool_from_deploy("infer")
    not_an_image = tmp_path / "third.png"
    not_an_image.write_text("not an image")
    for bad in (not_an_image, tmp_path / "missing.png"):
        with pytest.raises(SystemExit, match=re.escape(repr(str(bad)))):
            infer.main([str(export.out / "model.json"), str(fits), str(bad), "--out", str(out)])
        assert contents(out) == ["keep"]


# 3. The sidecar's own content is integrity-checked.


def test_edited_or_unsealed_sidecar_is_refused(export, pair, tmp_path):
    sidecar = json.loads((pair / "model.json").read_text())
    assert sidecar[DIGEST_KEY] == seal_sidecar(sidecar)[DIGEST_KEY]
    (pair / "model.json").write_text(json.dumps(sidecar))  # re-formatting changes nothing
    assert load_deployment(pair).sidecar["input"]["mean"] == sidecar["input"]["mean"]

    edited = json.loads(json.dumps(sidecar))
    edited["input"]["mean"][0] += 10.0  # would silently shift every prediction
    (pair / "model.json").write_text(json.dumps(edited, indent=2))
    modified = rf"sidecar '{re.escape(str(pair / 'model.json'))}' was modified after export"
    with pytest.raises(DeploymentError, match=modified):
        load_deployment(pair)
    out = tmp_path / "pred"
    image = write_image(tmp_path / "scene.png", 30, 60)
    with pytest.raises(SystemExit, match=modified):
        load_tool_from_deploy("infer").main([str(pair), str(image), "--out", str(out)])
    assert not out.exists()

    unsealed = {k: v for k, v in sidecar.items() if k != DIGEST_KEY}  # an older export
    (pair / "model.json").write_text(json.dumps(unsealed, indent=2))
    with pytest.raises(DeploymentError, match=r"has no 'sidecar_sha256'.*the model again"):
        load_deployment(pair / "model.onnx")


def test_engine_sidecar_is_sealed_and_checked(pair, tmp_path):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"engine bytes")  # deserialization is TensorRT's; the sidecar is ours
    sidecar = make_engine_sidecar(load_deployment(pair), engine, precision="fp16")
    engine_sidecar_path(engine).write_text(json.dumps(sidecar, indent=2))
    loaded = load_engine_deployment(engine)
    assert loaded.sidecar["engine"]["sha256"] == file_sha256(engine)
    assert loaded.sidecar["engine"]["precision"] == "fp16"

    for key, value in [("engine", dict(sidecar["engine"], precision="int8")), (DIGEST_KEY, None)]:
        broken = {k: v for k, v in dict(sidecar, **{key: value}).items() if v is not None}
        engine_sidecar_path(engine).write_text(json.dumps(broken))
        with pytest.raises(DeploymentError, match=r"modified after the engine build|no 'sidec"):
            load_engine_deployment(engine)


# 4. A truncated model whose hash was recomputed: one sentence naming the file.


@pytest.mark.parametrize("cut", ["mid-message", "at-field-boundary"])
def test_truncated_onnx_with_matching_hash_names_the_file(export, pair, cut, tmp_path):
    path = pair / "model.onnx"
    data = path.read_bytes()
    if cut == "mid-message":
        data = data[: len(data) // 2]  # protobuf cannot parse it
    else:
        model = onnx.load_from_string(data)
        del model.opset_import[:]  # the last field: a prefix of the file that still parses
        assert data.startswith(model.SerializeToString())
        data = model.SerializeToString()
    path.write_bytes(data)
    reseal(pair, onnx_sha256=file_sha256(path))
    deployment = load_deployment(pair)  # the checksum matches, as the issue describes

    invalid = rf"'{re.escape(str(path))}' is not a valid, complete ONNX model"
    with pytest.raises(DeploymentError, match=invalid):
        OrtRunner(deployment, providers=["CPUExecutionProvider"])
    with pytest.raises(DeploymentError, match=invalid):
        load_onnx(path)
    with pytest.raises(SystemExit, match=invalid):  # before TensorRT is even looked for
        load_tool_from_deploy("build_engine").main([str(path), "--out", str(tmp_path / "m.plan")])
    if cut == "mid-message":
        image = write_image(tmp_path / "scene.png", 30, 60)
        out = tmp_path / "pred"
        message = assert_one_sentence(run("deploy/infer.py", pair, image, "--out", out))
        assert re.match(invalid, message)
        assert not out.exists()
        with pytest.raises(SystemExit, match=invalid):
            load_tool("quantize").main([str(export.config), str(pair), "--calib-samples", "1"])
        assert contents(pair) == ["model.json", "model.onnx"]


# 5. Quantization validates everything first and publishes last.


def test_quantize_with_other_tasks_refuses_before_writing(export, pair):
    message = assert_one_sentence(
        run("tools/quantize.py", export.single, pair, "--calib-samples", "1", "--runs", "1")
    )
    assert "model tasks ['semseg'] differ from the export's tasks" in message
    assert "only in the export: ['depth', 'normals', 'edge']" in message
    assert contents(pair) == ["model.json", "model.onnx"]


def test_quantization_publishes_only_after_the_last_check(pair):
    fp32 = load_deployment(pair)
    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    staged = []

    def evaluation_fails(int8):
        staged.append(load_deployment(int8.sidecar_path))  # a complete, sealed pair...
        raise RuntimeError("evaluation failed")  # ...that is still not published

    with pytest.raises(RuntimeError, match="evaluation failed"):
        verified.quantize_verified(fp32, [image], before_publish=evaluation_fails)
    assert staged and staged[0].sidecar_path.parent != pair
    assert contents(pair) == ["model.json", "model.onnx"]


# 6. Export arguments are checked at parse time.


def test_export_refuses_zero_parity_samples_before_any_work(export, tmp_path):
    out = tmp_path / "new"
    args = [export.config, export.checkpoint, "--out", out, "--parity-samples", "0"]
    message = assert_one_sentence(run("tools/export.py", *args), code=2)
    assert message.endswith("error: argument --parity-samples: must be at least 1, got 0")
    assert not out.exists()
    with pytest.raises(ValueError, match="parity_samples must be an integer >= 1, got 0"):
        verified.export_verified(None, out, (32, 64), parity_samples=0)
    assert not out.exists()


# Names built from user-controlled strings cannot leave their directory.


def test_names_from_user_strings_stay_in_their_directory(export, pair, tmp_path):
    # A sidecar naming a graph outside its directory (here a valid one, with the right hash).
    shutil.copy(pair / "model.onnx", tmp_path / "elsewhere.onnx")
    for name in ("../elsewhere.onnx", str(tmp_path / "elsewhere.onnx")):
        reseal(pair, onnx=name)
        with pytest.raises(DeploymentError, match="expected a file name in the sidecar's own"):
            load_deployment(pair)

    with pytest.raises(ValueError, match="must be a plain file stem"):
        export_onnx(None, tmp_path / "stage", (32, 64), name="../evil")
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and the message, code 2
        load_tool("export").main(
            [str(export.config), str(export.checkpoint), "--out", str(tmp_path / "x")]
            + ["--name", "../evil"]
        )
    assert exit_info.value.code == 2 and not (tmp_path / "x").exists()
    assert not (tmp_path / "evil.onnx").exists()

    # infer.py: an output that would overwrite one of the input images.
    out = tmp_path / "pred"
    scene = write_image(out / "scene.png", 30, 60)
    painted = write_image(out / "scene_depth.png", 30, 60, seed=1)
    with pytest.raises(SystemExit, match="overwriting the input image"):
        load_tool_from_deploy("infer").main(
            [str(export.out), str(scene), str(painted), "--out", str(out)]
        )
    assert contents(out) == ["scene.png", "scene_depth.png"]

    # build_engine.py: an engine path whose file or sidecar is the source model's.
    shutil.copy(export.out / "model.onnx", pair / "model.onnx")
    reseal(pair, onnx="model.onnx")
    before = {p.name: p.read_bytes() for p in pair.iterdir()}
    for target in ("model.onnx", "model.pb", "engine.json"):
        with pytest.raises(SystemExit, match=r"would overwrite the source|\.json"):
            load_tool_from_deploy("build_engine").main(
                [str(pair / "model.onnx"), "--out", str(pair / target)]
            )
    assert {p.name: p.read_bytes() for p in pair.iterdir()} == before
