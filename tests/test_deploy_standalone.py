"""Issue 16: the edge runtime stands alone (numpy + ONNX Runtime, no torch/mmengine/albumentations).

``deploy/*.py`` run in a subprocess where torch, mmengine and albumentations cannot be imported
(a meta-path finder refuses them, as on a Jetson without them), on a real tiny export made by
tools/export.py, and must predict what ``vision_mtl.apis.inference`` predicts with PyTorch. The
decoding rules are one table with a torch and a NumPy interpreter; both are checked on random
logits for every rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, load_tool
from test_export import _tiny_config

from vision_mtl.apis import inference, init_model
from vision_mtl.apis.inference import read_image as training_read_image
from vision_mtl.runtime import DeploymentError, OrtRunner, load_deployment, read_image
from vision_mtl.runtime.decode import (
    DECODE_RULES,
    NUMPY_OPS,
    DecodeName,
    _torch_ops,
    decode_array,
    decode_tensor,
)
from vision_mtl.runtime.sidecar import seal_sidecar
from vision_mtl.tasks import TASKS, get_task

sys.path.insert(0, str(ROOT / "deploy"))
from cuda_buffers import CudartBuffers  # noqa: E402
from trt_runtime import tensorrt_unavailable  # noqa: E402

BLOCKED = ("torch", "mmengine", "albumentations")
# Runs a script as ``python SCRIPT ARGS`` would, with BLOCKED unimportable; writes to REPORT the
# modules loaded at exit and every attempt to import a blocked one (even a caught attempt).
BLOCKER = f"""
import json, runpy, sys

BLOCKED = {BLOCKED!r}
attempts = []


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Refuse())
report, script, *args = sys.argv[1:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open(report, "w") as f:
        json.dump(dict(modules=sorted(sys.modules), attempts=attempts), f)
"""
# ONNX Runtime and PyTorch run the same fp32 graph with different kernels (summation order,
# vectorized exp/tanh), so raw outputs differ by float32 rounding; the export's parity gate
# bounds that at 1e-4 (tools/export.py --atol). Decoding is 1-Lipschitz or flatter (relu,
# sigmoid, softmax) except normalization, whose slope 1/|v| stays modest for a trained or
# initialised head, so decoded values are compared at the same 1e-4.
ATOL = 1e-4


def _varied_checkpoint(config: Path, tmp: Path) -> Path:
    """A checkpoint whose predictions vary over the image, as tools/train.py saves them.

    A freshly initialised model predicts one class and zero depth everywhere, which would make
    the comparisons below vacuous; every weight is perturbed by N(0, 0.2²) instead.
    """
    torch.manual_seed(0)
    model = init_model(config, None, device="cpu")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    classes = model.num_classes["semseg"]
    meta = dict(dataset_meta=dict(class_names={"semseg": [f"c{i}" for i in range(classes)]}))
    path = tmp / "varied.pth"
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny quickstart model exported by tools/export.py, and two images to predict."""
    tmp = tmp_path_factory.mktemp("standalone")
    config = _tiny_config(tmp)
    checkpoint = _varied_checkpoint(config, tmp)
    out = tmp / "out"
    load_tool("export").main(
        [str(config), str(checkpoint), "--out", str(out), "--parity-samples", "1"]
    )
    rng = np.random.default_rng(0)
    images = {}
    for stem, shape in (("scene", (30, 60, 3)), ("full", (32, 64, 3))):  # under / at the canvas
        images[stem] = tmp / f"{stem}.png"
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        assert cv2.imwrite(str(images[stem]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return config, checkpoint, out, images


def run_blocked(tmp: Path, script: str, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``deploy/<script>`` with torch, mmengine and albumentations unimportable."""
    blocker = tmp / "blocker.py"
    blocker.write_text(BLOCKER)
    report = tmp / f"{Path(script).stem}_modules.json"
    command = [sys.executable, str(blocker), str(report), str(ROOT / script), *map(str, args)]
    result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=300)
    loaded = json.loads(report.read_text()) if report.is_file() else {}
    return result, loaded


def assert_standalone(loaded: dict, allow_onnx: bool = False) -> None:
    """No blocked package was imported, nor even tried; onnx only where a graph is parsed."""
    tops = {name.partition(".")[0] for name in loaded["modules"]}
    assert not tops & set(BLOCKED), sorted(tops & set(BLOCKED))
    assert loaded["attempts"] == []
    if not allow_onnx:
        assert "onnx" not in tops


def test_the_blocker_makes_torch_unimportable(tmp_path):
    """The mechanism the tests below rely on: an import of torch fails in the subprocess."""
    script = tmp_path / "wants_torch.py"
    script.write_text("import torch\n")
    result, loaded = run_blocked(tmp_path, str(script))
    assert result.returncode == 1 and "No module named 'torch' (blocked)" in result.stderr
    assert loaded["attempts"] == ["torch"] and "torch" not in loaded["modules"]


def test_infer_without_torch_matches_pytorch_inference(export, tmp_path):
    config, checkpoint, out, images = export
    pred = tmp_path / "pred"
    result, loaded = run_blocked(
        tmp_path,
        "deploy/infer.py",
        out / "model.json",
        *images.values(),
        "--out",
        pred,
        "--backend",
        "ort",
    )
    assert result.returncode == 0, result.stderr
    assert_standalone(loaded)
    print(f"infer.py --backend ort loaded {len(loaded['modules'])} modules")

    model = init_model(config, checkpoint, device="cpu")
    deployment = load_deployment(out)
    runner = OrtRunner(deployment, providers=["CPUExecutionProvider"])
    classes = deployment.sidecar["num_classes"]
    for stem, path in images.items():
        expected = inference(model, path)
        assert len(np.unique(expected["semseg"])) > 1 and (expected["depth"] > 0).mean() > 0.5
        # Class ids must agree exactly: check that no pixel's top two logits are closer than
        # twice the largest ONNX Runtime / PyTorch difference, so no tie can flip.
        batch, ((h, w),) = deployment.preprocess([read_image(path)])
        raw = runner.run(batch)
        with torch.no_grad():
            eager = model(torch.from_numpy(batch), mode="tensor")
        difference = max(np.abs(raw[t] - eager[t].numpy()).max() for t in deployment.tasks)
        top2 = np.sort(raw["semseg"][0, :, :h, :w], axis=0)[-2:]
        assert (top2[1] - top2[0]).min() > 2 * difference, "a near-tie: choose another image"
        for task in deployment.tasks:
            saved = np.load(pred / f"{stem}_{task}.npy")
            assert saved.shape == expected[task].shape and saved.dtype == expected[task].dtype
            if get_task(task).decode == "argmax":
                np.testing.assert_array_equal(saved, expected[task])
            else:
                np.testing.assert_allclose(saved, expected[task], rtol=0, atol=ATOL)
            # The picture is the one training draws for the same prediction.
            painted = cv2.cvtColor(cv2.imread(str(pred / f"{stem}_{task}.png")), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(
                painted, get_task(task).colorize(saved, classes.get(task))
            )
    assert sorted(p.name for p in pred.iterdir()) == sorted(
        f"{stem}_{task}{suffix}"
        for stem in images
        for task in deployment.tasks
        for suffix in (".npy", ".png")
    )


def test_deploy_scripts_start_and_benchmark_without_torch(export, tmp_path):
    _, _, out, images = export
    for script in ("deploy/infer.py", "deploy/benchmark.py", "deploy/build_engine.py"):
        result, loaded = run_blocked(tmp_path, script, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
        assert_standalone(loaded, allow_onnx=script.endswith("build_engine.py"))
        print(f"{script} --help: {len(loaded['modules'])} modules")

    report = tmp_path / "latency.json"
    result, loaded = run_blocked(
        tmp_path, "deploy/benchmark.py", out, "--runs", "3", "--warmup", "1", "--out", report
    )
    assert result.returncode == 0, result.stderr
    assert_standalone(loaded)
    saved = json.loads(report.read_text())
    assert saved["network"]["runs"] == 3 and saved["images_per_s"] > 0
    assert saved["canvas"] == [32, 64] and saved["backend"] == "ort"

    if tensorrt_unavailable() is not None:  # the TensorRT path says why, without torch too
        result, loaded = run_blocked(
            tmp_path,
            "deploy/infer.py",
            out / "model.onnx",
            images["scene"],
            "--out",
            tmp_path / "trt",
            "--backend",
            "trt",
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().startswith("cannot run a TensorRT engine here: ")
        assert_standalone(loaded)


def _logits(rule: str, rng: np.random.Generator) -> np.ndarray:
    """Random B×C×H×W logits for a rule: wide range, extremes, ties and zero vectors."""
    channels = {"argmax": 6, "softmax_fg": 2, "sigmoid": 1, "relu": 1, "unit": 3}[rule]
    logits = rng.normal(0, 4, (2, channels, 9, 11)).astype(np.float32)
    logits[0, :, 0, 0] = 90.0  # saturated sigmoid, equal softmax channels
    logits[0, :, 0, 1] = -90.0
    logits[0, 0, 0, 2] = 88.0  # one dominant channel
    logits[1, :, 1, :] = np.round(logits[1, :, 1, :])  # exact ties for argmax
    logits[1, :, 3, 3] = 1.0  # every channel tied
    logits[1, :, 2, 3] = 0.0  # a zero vector: normalization's epsilon
    return logits


@pytest.mark.parametrize("rule", sorted(DECODE_RULES))
def test_torch_and_numpy_decoders_agree(rule):
    rng = np.random.default_rng(sorted(DECODE_RULES).index(rule))
    for _ in range(5):
        logits = _logits(rule, rng)
        mine = decode_array(rule, logits)
        theirs = decode_tensor(rule, torch.from_numpy(logits)).numpy()
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, (mine.dtype, theirs.dtype)
        if rule == "argmax":
            np.testing.assert_array_equal(mine, theirs)  # ties: both take the first class
        else:  # float32 rounding of exp/tanh/sqrt differs by a few ulps between libraries
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
            assert np.isfinite(mine).all()


def test_decoding_rules_are_one_table():
    """Both interpreters cover the table's operations; every task's rule and picture come from it."""
    used = {step[0] for rule in DECODE_RULES.values() for step in rule.steps}
    assert used == set(NUMPY_OPS) == set(_torch_ops())
    assert set(typing.get_args(DecodeName)) == set(DECODE_RULES)
    for spec in TASKS.values():
        assert spec.decode in DECODE_RULES, spec.name
        # infer.py paints a prediction by its rule; training pictures by the task's colormap.
        assert DECODE_RULES[spec.decode].colormap == spec.colormap, spec.name
        logits = torch.from_numpy(_logits(spec.decode, np.random.default_rng(0)))
        assert torch.equal(spec.decode_logits(logits), decode_tensor(spec.decode, logits))
    with pytest.raises(KeyError, match="unknown decoding rule 'softmax'; known rules: argmax"):
        decode_array("softmax", np.zeros((1, 2, 1, 1), np.float32))


def test_one_image_reader_for_training_tools_and_the_runtime(tmp_path):
    """apis.inference re-exports the runtime's reader; every file kind becomes H×W×3 uint8 RGB."""
    assert training_read_image is read_image
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "color.png"), color)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "alpha.png"), rng.integers(0, 256, (5, 7, 4), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "deep.png"), rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16))
    np.testing.assert_array_equal(read_image(tmp_path / "color.png"), color[..., ::-1])
    np.testing.assert_array_equal(
        read_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, 2)
    )
    for name in ("alpha.png", "deep.png"):
        pixels = read_image(tmp_path / name)
        assert pixels.dtype == np.uint8 and pixels.shape == (5, 7, 3)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(FileNotFoundError, match="broken.png"):
        read_image(tmp_path / "broken.png")


def test_sidecar_with_an_unknown_decoding_rule_is_refused(export, tmp_path):
    _, _, out, _ = export
    sidecar = json.loads((out / "model.json").read_text())
    (tmp_path / "model.onnx").write_bytes((out / "model.onnx").read_bytes())
    outputs = [dict(o) for o in sidecar["outputs"]]
    outputs[1]["decode"] = "softmax"
    (tmp_path / "model.json").write_text(json.dumps(seal_sidecar(dict(sidecar, outputs=outputs))))
    with pytest.raises(DeploymentError) as error:
        load_deployment(tmp_path)
    assert str(error.value) == (
        f"sidecar '{tmp_path / 'model.json'}' output 1 (depth) has decode 'softmax', expected one "
        f"of {sorted(DECODE_RULES)}; export (or quantize) the model again"
    )


def test_cuda_runtime_buffers_load_without_torch():
    """The torch-free TensorRT buffers bind the CUDA runtime's calls; a bad name fails clearly."""
    with pytest.raises(OSError, match="no CUDA runtime library among"):
        CudartBuffers.load_library("libcudart-does-not-exist.so")
    try:
        cuda = CudartBuffers.load_library()
    except OSError:
        pytest.skip("no CUDA runtime library on this machine")
    count = cuda.device_count()
    assert count >= 0
    if count == 0:
        with pytest.raises(RuntimeError, match="CUDA runtime call cudaStreamCreate failed"):
            CudartBuffers()
