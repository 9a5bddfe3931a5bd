"""INT8 with NVIDIA ModelOpt's ONNX quantizer: TensorRT-checked, runs in ONNX Runtime, near fp32."""

from __future__ import annotations

import importlib.util
import platform
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import QUICKSTART, TINY_OPTIONS, load_tool

from vision_mtl.apis import init_model, load_config
from vision_mtl.export import DeploymentError, OrtRunner, check_graph, load_deployment
from vision_mtl.export.modelopt_quantize import fold_weight_quantizers, quantize_int8_modelopt
from vision_mtl.export.quantize import quantize_int8
from vision_mtl.runtime.deployment import Deployment


def _modelopt_missing() -> str | None:
    """Why ModelOpt's ONNX quantizer cannot be imported here, or ``None`` if it can."""
    if importlib.util.find_spec("modelopt") is None:
        return "nvidia-modelopt is not installed"
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as err:
        return f"modelopt.onnx.quantization does not import: {err}"
    return None


needs_modelopt = pytest.mark.skipif(bool(_modelopt_missing()), reason=str(_modelopt_missing()))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """The tiny quickstart model exported by tools/export.py, and calibration images."""
    tmp = tmp_path_factory.mktemp("modelopt")
    cfg = load_config(QUICKSTART, dict(TINY_OPTIONS), work_dir=str(tmp / "work"))
    config = tmp / "tiny.py"
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = init_model(config, None, device="cpu")
    classes = model.num_classes["semseg"]
    meta = dict(dataset_meta=dict(class_names={"semseg": [f"c{i}" for i in range(classes)]}))
    checkpoint = tmp / "seed0.pth"
    torch.save(dict(state_dict=model.state_dict(), meta=meta), checkpoint)
    load_tool("export").main([str(config), str(checkpoint), "--out", str(tmp / "out")])
    deployment = load_deployment(tmp / "out")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*deployment.canvas, 3), dtype=np.uint8) for _ in range(6)]
    return deployment, images


@pytest.fixture(scope="module")
def quantized(tiny_export, tmp_path_factory):
    """ModelOpt's INT8 graph of the tiny export, between two runs of ONNX Runtime's quantizer."""
    deployment, images = tiny_export
    out = tmp_path_factory.mktemp("int8")
    before = quantize_int8(deployment, images, out / "ort_before.onnx", "minmax")
    path = quantize_int8_modelopt(deployment, images, out / "model_int8.onnx", "minmax")
    after = quantize_int8(deployment, images, out / "ort_after.onnx", "minmax")
    return path, before, after


@needs_modelopt
def test_modelopt_graph_passes_the_tensorrt_check(quantized):
    path, _, _ = quantized
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "model_int8.onnx",
        "ort_after.onnx",
        "ort_before.onnx",
    ]  # no staging directory or ModelOpt intermediate left
    assert check_graph(str(path), ("8.6", "10.3")) == []  # opset 17, symmetric INT8
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) > 10
    assert not [n.name for n in quantizers if n.input[0] in inits]  # weights stored as INT8
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert sum(n.input[0] in dequantized for n in convs) > len(convs) // 2


@needs_modelopt
def test_modelopt_graph_runs_close_to_fp32(tiny_export, quantized):
    deployment, images = tiny_export
    fp32 = OrtRunner(deployment, providers=["CPUExecutionProvider"])
    int8 = OrtRunner(deployment, onnx_path=quantized[0], providers=["CPUExecutionProvider"])
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert int8.reencoded > 0  # activations re-encoded as UINT8 for the x86 kernels
    for image in images[:3]:
        batch, _ = deployment.preprocess([image])
        expected, got = fp32.run(batch), int8.run(batch)
        for task in expected:
            error = np.linalg.norm(got[task] - expected[task]) / np.linalg.norm(expected[task])
            assert error < 0.05, task  # measured about 0.003 (50 dB); rounding alone is ~1%


@needs_modelopt
def test_modelopt_leaves_onnxruntime_quantizer_as_it_was(quantized):
    _, before, after = quantized
    assert onnx.load(str(before)).graph == onnx.load(str(after)).graph


def _hide_modelopt(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "modelopt" or m.startswith("modelopt.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "modelopt", None)


def test_missing_modelopt_names_the_package_and_install_command(tiny_export, tmp_path, monkeypatch):
    deployment, images = tiny_export
    _hide_modelopt(monkeypatch)
    with pytest.raises(ImportError, match="nvidia-modelopt") as caught:
        quantize_int8_modelopt(deployment, images, tmp_path / "model_int8.onnx")
    assert 'pip install -e ".[modelopt]"' in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused_before_any_work(tiny_export, tmp_path, monkeypatch):
    deployment, images = tiny_export
    _hide_modelopt(monkeypatch)  # the checks come before ModelOpt is imported
    out = tmp_path / "model_int8.onnx"
    with pytest.raises(ValueError, match="'percentile' is not one of"):
        quantize_int8_modelopt(deployment, images, out, method="percentile")
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_int8_modelopt(deployment, [], out)
    height, width = deployment.canvas
    too_big = np.zeros((height + 8, width, 3), np.uint8)
    with pytest.raises(DeploymentError, match="calibration image 1"):
        quantize_int8_modelopt(deployment, [images[0], too_big], out)
    # a truncated graph (its sidecar's checksum is not what is tested: built directly)
    data = deployment.onnx_path.read_bytes()
    (tmp_path / "model.onnx").write_bytes(data[: len(data) // 2])
    truncated = Deployment(tmp_path / "model.json", deployment.sidecar)
    with pytest.raises(DeploymentError, match="not a valid, complete ONNX model"):
        quantize_int8_modelopt(truncated, images, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_folding_weight_quantizers_is_exact():
    """A per-channel QuantizeLinear of a constant becomes its INT8 result; outputs unchanged."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    scale = (np.abs(weight).reshape(4, -1).max(1) / 127).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(scale, "ws"),
        numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], name="q", axis=0),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dq", axis=0),
        helper.make_node("Conv", ["x", "wd"], ["y"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert fold_weight_quantizers(model) == 1
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert "w" not in stored and stored["wq"].dtype == np.int8
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "Conv"]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(before, after)


@needs_modelopt
def test_quantize_tool_selects_the_modelopt_quantizer(tiny_export):
    deployment, _ = tiny_export
    config = deployment.onnx_path.parent.parent / "tiny.py"
    report = load_tool("quantize").main(
        [str(config), str(deployment.sidecar_path), "--quantizer", "modelopt"]
        + ["--calib-samples", "2", "--eval-samples", "2", "--runs", "2"]
    )
    int8 = load_deployment(report["onnx"])
    section = int8.sidecar["quantization"]
    assert section["quantizer"] == "modelopt" and section["calibration"]["method"] == "entropy"
    assert report["quantizer"] == "modelopt" and check_graph(str(int8.onnx_path)) == []
    int8.onnx_path.unlink()
    int8.sidecar_path.unlink()


def test_quantize_tool_refuses_a_method_the_quantizer_lacks(tiny_export):
    deployment, _ = tiny_export
    config = deployment.onnx_path.parent.parent / "tiny.py"
    with pytest.raises(SystemExit, match="'percentile' is not one of the modelopt quantizer's"):
        load_tool("quantize").main(
            [str(config), str(deployment.sidecar_path), "--quantizer", "modelopt"]
            + ["--method", "percentile"]
        )
    assert not (deployment.onnx_path.parent / "model_int8.onnx").exists()
