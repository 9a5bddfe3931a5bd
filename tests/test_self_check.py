"""Issue 22 item 5: the device self-check (deploy/self_check.py) and the export's reference inputs.

On this machine (no TensorRT, no GPU) the command must refuse with one plain sentence and write
nothing; every bad input is named before TensorRT is even looked for. The reference inputs are
written by a real tiny export and checked like its graph. The comparison is pure NumPy and runs
here on real ONNX Runtime outputs; the device path (build, compare, time, report) runs here with
ONNX Runtime standing in for TensorRT.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, load_tool
from test_deploy_standalone import _varied_checkpoint, assert_standalone, run_blocked
from test_export import _tiny_config

from vision_mtl.apis import load_config
from vision_mtl.export import verified
from vision_mtl.export.parity import load_samples, sample_image
from vision_mtl.runtime import DECODE_RULES, DeploymentError, OrtRunner, load_deployment
from vision_mtl.runtime.reference import load_reference, reference_bytes
from vision_mtl.runtime.sidecar import file_sha256, seal_sidecar

sys.path.insert(0, str(ROOT / "deploy"))
import self_check  # noqa: E402
from trt_runtime import (  # noqa: E402
    load_engine_deployment,
    make_engine_sidecar,
    tensorrt_unavailable,
)

TRT_REASON = tensorrt_unavailable()
EXPORTED = ["model.json", "model.onnx", "model_int8.json", "model_int8.onnx", "model_reference.npz"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny quickstart model with varied weights, exported by tools/export.py and quantized."""
    tmp = tmp_path_factory.mktemp("self_check")
    config = _tiny_config(tmp)
    out = tmp / "out"
    load_tool("export").main(
        [str(config), str(_varied_checkpoint(config, tmp)), "--out", str(out)]
        + ["--parity-samples", "2"]
    )
    fp32 = load_deployment(out / "model.json")
    calibration, _ = load_samples(load_config(config), "train", 2)
    verified.quantize_verified(fp32, [sample_image(s) for s in calibration])
    return config, out


@pytest.fixture
def pair(export, tmp_path) -> Path:
    """A private copy of the export directory, free to damage."""
    return Path(shutil.copytree(export[1], tmp_path / "export"))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (hidden ones included) and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def reseal(path: Path, **changes) -> None:
    """Rewrite a sidecar with ``changes`` and a valid digest (a deliberate, sealed edit)."""
    sidecar = json.loads(path.read_text())
    path.write_text(json.dumps(seal_sidecar(dict(sidecar, **changes)), indent=2))


def rerecord(pair: Path, data: bytes) -> None:
    """Replace the reference file and record its new SHA-256 in both sidecars."""
    (pair / "model_reference.npz").write_bytes(data)
    for name in ("model.json", "model_int8.json"):
        entry = json.loads((pair / name).read_text())["reference"]
        reseal(pair / name, reference=dict(entry, sha256=file_sha256(pair / "model_reference.npz")))


# 1. The export writes the reference inputs and records them.


def test_export_writes_reference_inputs_recorded_in_both_sidecars(export):
    config, out = export
    assert sorted(p.name for p in out.iterdir()) == EXPORTED  # nothing hidden left behind
    fp32, int8 = load_deployment(out / "model.json"), load_deployment(out / "model_int8.json")
    npz = out / "model_reference.npz"
    entry = fp32.sidecar["reference"]
    assert entry == dict(file=npz.name, sha256=file_sha256(npz), samples=2, split="val")
    assert int8.sidecar["reference"] == entry  # quantization copies it: the same inputs

    reference = load_reference(fp32)
    samples, _ = load_samples(load_config(config), "val", 2)  # the first parity samples
    expected, sizes = fp32.preprocess([sample_image(s) for s in samples])
    assert reference.inputs.dtype == np.float32 and reference.inputs.shape == (2, 3, 32, 64)
    np.testing.assert_array_equal(reference.inputs, expected)
    assert reference.sizes == sizes == [(32, 64), (32, 64)]
    assert reference.inputs[0].std() > 0.1 and not np.array_equal(*reference.inputs)
    assert load_reference(int8).path == reference.path == npz


def test_reference_inputs_are_checked_like_the_graph(pair):
    fp32 = load_deployment(pair / "model.json")
    good = (pair / "model_reference.npz").read_bytes()
    inputs = load_reference(fp32).inputs

    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    (pair / "model_reference.npz").write_bytes(bytes(data))
    with pytest.raises(DeploymentError, match=r"model_reference.npz' does not match its sidecar"):
        load_reference(fp32)
    (pair / "model_reference.npz").unlink()
    with pytest.raises(DeploymentError, match=r"model_reference.npz'.*are missing"):
        load_reference(fp32)

    # Files whose SHA-256 is recorded (so the digest passes) but whose content is wrong.
    pickled = io.BytesIO()
    np.savez(pickled, inputs=np.array([object()]), sizes=np.zeros((1, 2), np.int64))
    for data, message in [
        (b"not a zip", "is not a readable reference-inputs .npz file"),
        (pickled.getvalue(), "is not a readable reference-inputs .npz file"),  # never unpickled
        (reference_bytes(inputs[:1], [(32, 64)]), r"holds inputs of shape \[1, 3, 32, 64\]"),
        (reference_bytes(inputs[:, :, :16], [(16, 64)] * 2), r"describes \[2, 3, 32, 64\]"),
    ]:
        rerecord(pair, data)
        with pytest.raises(DeploymentError, match=message):
            load_reference(load_deployment(pair / "model.json"))

    rerecord(pair, good)
    assert load_reference(load_deployment(pair / "model.json")).inputs.shape == (2, 3, 32, 64)
    sidecar = json.loads((pair / "model.json").read_text())
    for entry, message in [
        (None, "records no reference inputs"),
        (dict(sidecar["reference"], file="../model_reference.npz"), "expected file"),
        (dict(sidecar["reference"], samples=0), r"samples \(>= 1\)"),
    ]:
        reseal(pair / "model.json", reference=entry)
        with pytest.raises(DeploymentError, match=message):
            load_reference(load_deployment(pair / "model.json"))

    with pytest.raises(ValueError, match=r"shape \[3, 32, 64\].*expected N×3×H×W"):
        reference_bytes(inputs[0], [(32, 64)])
    with pytest.raises(ValueError, match=r"sizes \[\[33, 64\]\]"):
        reference_bytes(inputs[:1], [(33, 64)])


# 2. Without TensorRT: one plain sentence, nothing written.


@pytest.mark.skipif(TRT_REASON is None, reason="TensorRT and a GPU are available here")
def test_self_check_refuses_cleanly_without_tensorrt(export, tmp_path):
    _, out = export
    before = snapshot(out)
    work = tmp_path / "work"  # the default --out would be created here
    work.mkdir()
    for extra in ([], ["--out", str(tmp_path / "checked")]):
        command = [sys.executable, str(ROOT / "deploy/self_check.py"), str(out), *extra]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stdout == ""
        assert result.stderr.strip() == (
            f"cannot run the self-check here: {TRT_REASON}; it needs TensorRT and a CUDA GPU "
            "(a Jetson with JetPack, or a CUDA machine with TensorRT)"
        )
        assert list(work.iterdir()) == [] and not (tmp_path / "checked").exists()
    assert snapshot(out) == before

    # The same on a device without torch, mmengine or albumentations (or onnx).
    result, loaded = run_blocked(tmp_path, "deploy/self_check.py", out, "--out", tmp_path / "c")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("cannot run the self-check here: ")
    assert_standalone(loaded)
    assert not (tmp_path / "c").exists() and snapshot(out) == before


# 3. Bad inputs are named before TensorRT is looked for.


def test_bad_inputs_are_named_before_any_work(pair, tmp_path, monkeypatch):
    def looked_for_tensorrt():
        raise AssertionError("TensorRT was looked for before the inputs were checked")

    monkeypatch.setattr(self_check, "tensorrt_unavailable", looked_for_tensorrt)

    def refused(*argv) -> str:
        with pytest.raises(SystemExit) as exit_info:
            self_check.main([str(a) for a in argv])
        return str(exit_info.value.code)

    assert "does not exist or is not a directory" in refused(tmp_path / "nowhere")
    assert f"sidecar '{tmp_path}/model.json' does not exist" in refused(tmp_path)
    message = refused(pair, "--name", "other")
    assert f"sidecar '{pair}/other.json' does not exist" in message

    # --out: the export directory itself, a file, a directory with a previous report.
    assert "is the export directory" in refused(pair, "--out", pair)
    (tmp_path / "file").write_text("x")
    assert "exists and is not a directory" in refused(pair, "--out", tmp_path / "file")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "self_check.json").write_text("{}")
    message = refused(pair, "--out", tmp_path / "old")
    assert "already holds ['self_check.json']" in message
    monkeypatch.chdir(pair)  # the default --out would land inside the export
    assert "would be inside the export directory" in refused(pair)
    monkeypatch.chdir(tmp_path)
    original = snapshot(pair)

    # An INT8 pair quantized from another export, or naming other reference inputs.
    int8 = json.loads((pair / "model_int8.json").read_text())
    quantization = dict(int8["quantization"], fp32_onnx_sha256="0" * 64)
    reseal(pair / "model_int8.json", quantization=quantization)
    assert "was quantized from another fp32 graph" in refused(pair)
    reseal(pair / "model_int8.json", quantization=int8["quantization"], reference=None)
    assert "names other reference inputs than" in refused(pair)
    (pair / "model_int8.json").write_bytes(original["model_int8.json"])

    # Digests: an edited sidecar, a corrupted reference file.
    sidecar = json.loads((pair / "model.json").read_text())
    (pair / "model.json").write_text(json.dumps(dict(sidecar, opset=18)))
    assert "was modified after export" in refused(pair)
    (pair / "model.json").write_bytes(original["model.json"])
    (pair / "model_reference.npz").write_bytes(b"corrupted")
    assert "model_reference.npz' does not match its sidecar" in refused(pair)
    (pair / "model_reference.npz").write_bytes(original["model_reference.npz"])
    assert snapshot(pair) == original  # nothing else written, here or beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "file", "old"]

    # Counts are refused by argparse, as a user sees it (usage line, then the error).
    command = [sys.executable, str(ROOT / "deploy/self_check.py"), str(pair), "--runs", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("error: argument --runs: must be at least 1, got 0")


# 4. The comparison: pure NumPy, on real ONNX Runtime outputs.


@pytest.fixture(scope="module")
def ort_outputs(export):
    """The fp32 deployment, its reference inputs and ONNX Runtime's outputs for them."""
    fp32 = load_deployment(export[1] / "model.json")
    reference = load_reference(fp32)
    runner = OrtRunner(fp32, providers=["CPUExecutionProvider"])
    return fp32, reference, self_check.run_each(runner.run, reference.inputs)


def test_every_decoding_rule_has_an_agreement_figure():
    assert set(self_check.AGREEMENTS) == set(DECODE_RULES)
    for agreement in self_check.AGREEMENTS.values():
        assert set(agreement.bounds) == set(self_check.PRECISIONS)


def test_onnx_runtime_against_itself_passes_every_task(ort_outputs):
    fp32, reference, outputs = ort_outputs
    assert len(np.unique(outputs["semseg"].argmax(1))) > 1  # varied predictions: not vacuous
    again = self_check.run_each(
        OrtRunner(fp32, providers=["CPUExecutionProvider"]).run, reference.inputs
    )
    rng = np.random.default_rng(0)
    noisy = {t: v + rng.normal(0, 1e-6, v.shape).astype(np.float32) for t, v in outputs.items()}
    for candidate in (again, noisy):
        results = self_check.compare_outputs(
            fp32.rules, outputs, candidate, reference.sizes, "fp16"
        )
        assert [r.task for r in results] == fp32.tasks and all(r.ok for r in results)
    exact = self_check.compare_outputs(fp32.rules, outputs, again, reference.sizes, "fp16")
    for result in exact:
        assert result.max_abs_diff == 0 and result.non_finite == 0
        assert result.value == (100.0 if result.at_least else 0.0), result


def _one_infinity(value: np.ndarray) -> np.ndarray:
    """``value`` with one element overflowed, as an FP16 engine's activation can."""
    value = value.copy()
    value[0, 0, 0, 0] = np.inf
    return value


def _perturbed(outputs: dict, task: str, change) -> dict:
    return {t: change(v) if t == task else v.copy() for t, v in outputs.items()}


@pytest.mark.parametrize(
    "task, change, figure",
    [
        ("semseg", lambda v: np.roll(v, 1, axis=1), "same class"),
        ("depth", lambda v: v * 1.5 + 0.5, "mean relative difference"),
        ("normals", lambda v: -v, "mean angle"),
        ("edge", lambda v: -v - np.sign(v), "same side of 0.5"),
        ("normals", lambda v: _one_infinity(v), "mean angle"),
    ],
)
def test_a_task_that_differs_fails_by_name(ort_outputs, task, change, figure):
    fp32, reference, outputs = ort_outputs
    candidate = _perturbed(outputs, task, change)
    for precision in self_check.PRECISIONS:
        results = self_check.compare_outputs(
            fp32.rules, outputs, candidate, reference.sizes, precision
        )
        failed = [r for r in results if not r.ok]
        assert [r.task for r in failed] == [task], [r.describe() for r in results]
        assert failed[0].figure == figure and failed[0].describe().startswith(f"{task}: {figure}")
    if np.isinf(candidate[task]).any():
        assert failed[0].non_finite == int(np.isinf(candidate[task]).sum()) > 0


def test_bounds_depend_on_the_precision_and_padding_is_ignored(ort_outputs):
    fp32, reference, outputs = ort_outputs
    rules = fp32.rules
    two_percent = _perturbed(outputs, "depth", lambda v: np.maximum(v, 0) * 1.02)
    fp16, int8 = (
        {
            r.task: r
            for r in self_check.compare_outputs(rules, outputs, two_percent, reference.sizes, p)
        }
        for p in ("fp16", "int8")
    )
    assert fp16["depth"].value == pytest.approx(2.0, rel=1e-3)
    assert not fp16["depth"].ok and int8["depth"].ok  # bounds 1% and 3%

    # Only each image's pixels before padding count: a difference in the padding does not.
    sizes = [(16, 40)] * len(reference.sizes)
    outside = {t: v.copy() for t, v in outputs.items()}
    for value in outside.values():
        value[..., 16:, :] += 100.0
        value[..., :, 40:] += 100.0
    assert all(r.ok for r in self_check.compare_outputs(rules, outputs, outside, sizes, "fp16"))
    inside = {t: v.copy() for t, v in outside.items()}
    inside["depth"][..., :16, :40] += 100.0
    failed = [
        r.task
        for r in self_check.compare_outputs(rules, outputs, inside, sizes, "fp16")
        if not r.ok
    ]
    assert failed == ["depth"]

    with pytest.raises(ValueError, match=r"depth: outputs of shape \[2, 1, 32, 63\]"):
        self_check.compare_outputs(
            rules, outputs, dict(outputs, depth=outputs["depth"][..., :63]), reference.sizes, "fp16"
        )
    partial = {t: v for t, v in outputs.items() if t != "edge"}
    with pytest.raises(ValueError, match="edge: missing from the candidate outputs"):
        self_check.compare_outputs(rules, outputs, partial, reference.sizes, "fp16")
    with pytest.raises(ValueError, match="precision 'fp32' is not one of"):
        self_check.compare_outputs(rules, outputs, outputs, reference.sizes, "fp32")


# 5. The device path, with ONNX Runtime standing in for TensorRT.


class StandInRunner:
    """What TrtRunner does with an engine, where the "engine" is the ONNX graph itself."""

    perturb: dict = {}

    def __init__(self, engine) -> None:
        deployment = load_engine_deployment(engine)  # the real engine-sidecar checks
        self.precision = deployment.sidecar["engine"]["precision"]
        self.ort = OrtRunner(deployment, onnx_path=engine, providers=["CPUExecutionProvider"])

    def run(self, batch):
        outputs = self.ort.run(batch)
        for task, change in self.perturb.get(self.precision, {}).items():
            outputs[task] = change(outputs[task])
        return outputs


def stand_in_build(onnx_path, engine, int8, workspace):
    """What build_engine.py writes: the engine (here the graph's bytes) and its sidecar."""
    engine.write_bytes(onnx_path.read_bytes())
    sidecar = make_engine_sidecar(
        load_deployment(onnx_path), engine, precision="int8" if int8 else "fp16"
    )
    engine.with_suffix(".json").write_text(json.dumps(sidecar))
    return engine


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(self_check, "tensorrt_unavailable", lambda: None)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="stand-in"))
    monkeypatch.setattr(self_check, "build", stand_in_build)
    monkeypatch.setattr(self_check, "TrtRunner", StandInRunner)
    monkeypatch.setattr(StandInRunner, "perturb", {})
    return StandInRunner


def test_device_path_builds_compares_times_and_reports(pair, tmp_path, stand_in, capsys):
    before = snapshot(pair)
    checked = tmp_path / "checked"
    report = self_check.main([str(pair), "--out", str(checked), "--runs", "3", "--warmup", "1"])
    assert sorted(p.name for p in checked.iterdir()) == [
        "model_fp16.json",
        "model_fp16.plan",
        "model_int8.json",
        "model_int8.plan",
        "self_check.json",
    ]
    assert snapshot(pair) == before  # nothing written into the export
    assert json.loads((checked / "self_check.json").read_text()) == json.loads(json.dumps(report))
    assert report["ok"] and report["reference"] == dict(file="model_reference.npz", samples=2)
    for precision, graph in (("fp16", "model.onnx"), ("int8", "model_int8.onnx")):
        engine = report["engines"][precision]
        assert engine["compared_with"] == f"ONNX Runtime (CPU) on {graph}"
        assert list(engine["tasks"]) == ["semseg", "depth", "normals", "edge"]
        assert engine["latency"]["runs"] == 3 and engine["latency"]["median_ms"] > 0
    printed = capsys.readouterr().out
    assert "fp16 engine vs ONNX Runtime (CPU) on model.onnx:" in printed
    assert "semseg" in printed and "same class" in printed and "latency, batch 1: median" in printed
    assert printed.rstrip().endswith(f"self-check passed; engines and self_check.json in {checked}")

    # An INT8 engine that gets depth wrong: exit 1 naming it, the report still written.
    stand_in.perturb = {"int8": {"depth": lambda v: v * 2 + 1}}
    with pytest.raises(SystemExit, match=r"self-check failed \(int8 depth: mean relative") as err:
        self_check.main([str(pair), "--out", str(tmp_path / "again"), "--runs", "1"])
    assert "fp16" not in str(err.value.code).split("report in")[0]
    saved = json.loads((tmp_path / "again" / "self_check.json").read_text())
    assert not saved["ok"] and saved["engines"]["fp16"]["ok"]
    assert not saved["engines"]["int8"]["tasks"]["depth"]["ok"]

    # Without the INT8 pair: the FP16 engine alone, and a note saying why.
    for name in ("model_int8.json", "model_int8.onnx"):
        (pair / name).unlink()
    report = self_check.main([str(pair), "--out", str(tmp_path / "fp16"), "--runs", "1"])
    assert list(report["engines"]) == ["fp16"] and report["ok"]
    assert report["notes"] == [
        f"INT8 not checked: '{pair}/model_int8.json' does not exist (tools/quantize.py writes it)"
    ]


def test_a_failed_build_is_reported_not_hidden(pair, tmp_path, stand_in, monkeypatch):
    def fails_for_int8(onnx_path, engine, int8, workspace):
        if int8:
            raise SystemExit("TensorRT failed to build the engine (see its log above)")
        return stand_in_build(onnx_path, engine, int8, workspace)

    monkeypatch.setattr(self_check, "build", fails_for_int8)
    with pytest.raises(SystemExit, match=r"int8 engine build: TensorRT failed to build"):
        self_check.main([str(pair), "--out", str(tmp_path / "out"), "--runs", "1"])
    saved = json.loads((tmp_path / "out" / "self_check.json").read_text())
    assert saved["engines"]["fp16"]["ok"] and not saved["engines"]["int8"]["ok"]


def test_a_device_without_onnx_runtime_is_told_before_any_build(
    pair, tmp_path, stand_in, monkeypatch
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(SystemExit) as exit_info:
        self_check.main([str(pair), "--out", str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert message.startswith("cannot run the self-check here: ") and "onnxruntime" in message
    assert message.endswith("the engines are compared with ONNX Runtime (pip install onnxruntime)")
    assert not (tmp_path / "out").exists()
