"""The edge path on real files: export with parity, the TensorRT check, INT8, the runtimes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import ROOT, TINY_OPTIONS, load_tool
from onnx import TensorProto, helper

from vision_mtl.apis import inference, init_model, load_config
from vision_mtl.export import (
    DeploymentError,
    OrtRunner,
    Problem,
    check_graph,
    check_parity,
    load_deployment,
    verified,
)
from vision_mtl.export.validate import seal_sidecar
from vision_mtl.runtime.onnx_model import unsigned_activations
from vision_mtl.tasks import TASKS

sys.path.insert(0, str(ROOT / "deploy"))
from trt_runtime import tensorrt_unavailable  # noqa: E402

QUICKSTART = "configs/quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py"
DECODER_CONFIGS = [
    "configs/taskexpert/taskexpert_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py",
    "configs/invpt/invpt_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py",
]
TRT_REASON = tensorrt_unavailable()


def _tiny_config(tmp: Path, config: str = QUICKSTART) -> Path:
    """The config at toy size (TINY_OPTIONS; decoder width kept where it is not ``channels``)."""
    options = dict(TINY_OPTIONS)
    if "baseline" not in config:
        options.pop("model.decoder.channels")
    cfg = load_config(ROOT / config, options, work_dir=str(tmp / "work"))
    path = tmp / f"{Path(config).stem}.py"
    cfg.dump(str(path))
    return path


def _checkpoint(config: Path, tmp: Path, seed: int = 0) -> Path:
    """A checkpoint of the freshly initialised model, as tools/train.py saves them."""
    torch.manual_seed(seed)
    model = init_model(config, None, device="cpu")
    classes = model.num_classes["semseg"]
    meta = dict(dataset_meta=dict(class_names={"semseg": [f"c{i}" for i in range(classes)]}))
    path = tmp / f"seed{seed}.pth"
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny quickstart model exported by tools/export.py (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("export")
    config = _tiny_config(tmp)
    checkpoint = _checkpoint(config, tmp)
    out = tmp / "out"
    result = load_tool("export").main([str(config), str(checkpoint), "--out", str(out)])
    return config, checkpoint, out, result


def test_export_writes_one_graph_and_its_sidecar(exported):
    config, _, out, result = exported
    assert {"model.json", "model.onnx"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    graph = onnx.load(str(out / "model.onnx"))
    order = [t for t in TASKS if t in ("semseg", "depth", "normals", "edge")]
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == order  # TaskSpec order
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["input"]["shape"] == [1, 3, 32, 64]
    assert len(sidecar["input"]["mean"]) == 3 and len(sidecar["input"]["std"]) == 3
    assert [o["name"] for o in sidecar["outputs"]] == order
    assert all(o["meaning"] for o in sidecar["outputs"])
    classes = sidecar["num_classes"]["semseg"]
    assert (
        sidecar["outputs"][0]["decode"] == "argmax" and sidecar["outputs"][0]["channels"] == classes
    )
    assert sidecar["class_names"]["semseg"] == [f"c{i}" for i in range(classes)]
    assert len(sidecar["palettes"]["semseg"]) == classes
    assert max(result["max_abs_diff"].values()) <= 1e-4
    assert check_graph(str(out / "model.onnx")) == []


def test_parity_names_the_task_that_differs(exported, tmp_path):
    config, _, out, _ = exported
    other = init_model(config, _checkpoint(config, tmp_path, seed=1), device="cpu")
    report = check_parity(other, load_deployment(out / "model.json"), other.cfg, num_samples=2)
    assert not report.ok
    assert any(f.startswith("depth: max |onnx - torch|") for f in report.failures)
    same = init_model(config, exported[1], device="cpu")
    assert check_parity(same, load_deployment(out / "model.onnx"), same.cfg, num_samples=2).ok


@pytest.mark.parametrize("config", DECODER_CONFIGS, ids=["taskexpert", "invpt"])
def test_each_decoder_exports_with_parity(config, tmp_path):
    tiny = _tiny_config(tmp_path, config)
    out = tmp_path / "out"
    result = load_tool("export").main(
        [str(tiny), str(_checkpoint(tiny, tmp_path)), "--out", str(out), "--parity-samples", "2"]
    )
    assert max(result["max_abs_diff"].values()) <= 1e-4
    assert check_graph(str(out / "model.onnx")) == []


def test_failed_checks_leave_no_file(exported, tmp_path, monkeypatch):
    config, checkpoint, export_dir, _ = exported
    tool = load_tool("export")
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)  # an existing directory keeps its content
    monkeypatch.setattr(verified, "check_parity", _failing_parity)
    with pytest.raises(SystemExit, match="normals: max"):
        tool.main([str(config), str(checkpoint), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["keep"]
    monkeypatch.undo()

    problem = Problem("/model/up/Resize", "Resize", "cubic resize (nearest/linear only)")
    monkeypatch.setattr(verified, "check_graph", lambda *args, **kwargs: [problem])
    with pytest.raises(SystemExit, match=r"/model/up/Resize \(Resize\): cubic resize"):
        tool.main([str(config), str(checkpoint), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["keep"]

    # The same for quantization: the INT8 pair appears only once it passed the check.
    pair = tmp_path / "pair"
    pair.mkdir()
    for name in ("model.onnx", "model.json"):
        (pair / name).write_bytes((export_dir / name).read_bytes())
    with pytest.raises(SystemExit, match="INT8 graph would not build"):
        load_tool("quantize").main([str(config), str(pair / "model.json"), "--calib-samples", "2"])
    assert sorted(p.name for p in pair.iterdir()) == ["model.json", "model.onnx"]


def _failing_parity(*args, **kwargs):
    from vision_mtl.export import ParityReport

    return ParityReport({"normals": 0.5}, {}, {}, ["normals: max |onnx - torch| = 0.5 > 0.0001"])


def test_corrupted_or_mismatched_pairs_fail_before_inference(exported, tmp_path):
    _, _, out, _ = exported
    pair = tmp_path / "pair"
    pair.mkdir()
    data = bytearray((out / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pair / "model.onnx").write_bytes(bytes(data))
    sidecar = json.loads((out / "model.json").read_text())
    (pair / "model.json").write_text(json.dumps(sidecar))
    with pytest.raises(DeploymentError, match="does not match its sidecar"):
        load_deployment(pair / "model.json")

    # Sidecars that are wrong as written (sealed, so the structural checks are what refuse them).
    (pair / "model.onnx").write_bytes((out / "model.onnx").read_bytes())
    for broken, message in [
        (dict(sidecar, format="mmdeploy"), "expected 'vision_mtl.deploy/1'"),
        ({k: v for k, v in sidecar.items() if k != "outputs"}, r"lacks key\(s\) \['outputs'\]"),
        (dict(sidecar, onnx="other.onnx"), "other.onnx.*is missing"),
    ]:
        (pair / "model.json").write_text(json.dumps(seal_sidecar(broken)))
        with pytest.raises(DeploymentError, match=message):
            load_deployment(pair / "model.json")
    (pair / "model.json").write_text("{not json")
    with pytest.raises(DeploymentError, match="not valid JSON"):
        load_deployment(pair)

    # A sidecar describing other outputs than the graph has: refused when the session opens.
    swapped = seal_sidecar(dict(sidecar, outputs=sidecar["outputs"][::-1]))
    (pair / "model.json").write_text(json.dumps(swapped))
    with pytest.raises(DeploymentError, match="has outputs"):
        OrtRunner(load_deployment(pair), providers=["CPUExecutionProvider"])


def test_infer_ort_end_to_end_matches_pytorch(exported, tmp_path):
    config, checkpoint, out, _ = exported
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (30, 60, 3), dtype=np.uint8)  # smaller than the canvas
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    infer = load_tool_from_deploy("infer")
    results = infer.main([str(out / "model.json"), str(path), "--out", str(tmp_path / "pred")])
    model = init_model(config, checkpoint, device="cpu")
    expected = inference(model, image)
    for task in ("semseg", "depth", "normals", "edge"):
        saved = np.load(tmp_path / "pred" / f"scene_{task}.npy")
        np.testing.assert_array_equal(saved, results["scene"][task])
        assert (tmp_path / "pred" / f"scene_{task}.png").is_file()
        assert saved.shape[:2] == (30, 60)
        if task == "semseg":
            assert (saved == expected[task]).mean() > 0.99  # argmax ties may flip at 1e-6
        else:
            np.testing.assert_allclose(saved, expected[task], atol=1e-4)


def load_tool_from_deploy(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quantize_writes_a_symmetric_graph_tensorrt_accepts(exported, tmp_path):
    config, _, out, _ = exported
    report = load_tool("quantize").main(
        [str(config), str(out), "--calib-samples", "4", "--eval-samples", "4", "--runs", "3"]
    )
    int8 = Path(report["onnx"])
    assert int8.name == "model_int8.onnx"
    assert check_graph(str(int8)) == []  # symmetric int8, per-channel only on weights
    graph = onnx.load(str(int8))
    assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) > 10
    deployment = load_deployment(int8)
    assert deployment.sidecar["quantization"]["activations"] == "int8 symmetric per-tensor"
    # every head's last convolution stays fp32, though its output is cast and upsampled after
    kept = deployment.sidecar["quantization"]["fp32_nodes"]
    assert {n.split("/")[2] for n in kept if n.endswith("/predict/Conv")} == set(deployment.tasks)
    assert set(report["latency"]) == {"fp32", "int8"}
    assert "multitask/delta_m" in report["delta"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


def test_unsigned_activations_is_an_exact_re_encoding():
    """x86 form of a QDQ graph: same dequantized values, weights left signed."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    weight = helper.make_tensor("w", TensorProto.INT8, [2], [3, -7])
    wscale = helper.make_tensor("ws", TensorProto.FLOAT, [], [0.1])
    wzero = helper.make_tensor("wz", TensorProto.INT8, [], [0])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="wd"),
        helper.make_node("Add", ["dq", "wd"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [scale, zero, weight, wscale, wzero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    import onnxruntime as ort

    x = np.array([-7.0, 2.33], np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert unsigned_activations(model) == 1
    zeros = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert zeros["z"].dtype == np.uint8 and zeros["z"] == 128 and zeros["wz"].dtype == np.int8
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(before, after)  # -7.0 saturates at -128·0.05 in both


def _graph(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_tensorrt_check_names_each_offending_node():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 16, 16])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    zero = helper.make_tensor("zp", TensorProto.INT8, [], [3])
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], name="up", mode="cubic"),
        helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["q"], name="quant"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"], name="dequant"),
        helper.make_node("Gelu", ["d"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("Col2Im", ["g"], ["y"], name="col2im"),
    ]
    model = _graph(nodes, [x], [y], [scales, zero, s])
    found = {(p.node, p.reason) for p in check_graph(model)}
    assert ("up", "cubic resize (nearest/linear only)") in found
    assert ("quant", "asymmetric (non-zero zero point)") in found
    assert ("gelu", "custom domain 'com.microsoft' needs a plugin") in found
    assert ("col2im", "not supported by TensorRT 8.6, 10.3") in found
    assert any(p.node == "x" and "profile" in p.reason for p in check_graph(model))
    assert not any(p.node == "x" for p in check_graph(model, profiles={"x": {0: (1, 1, 4)}}))


def test_export_refuses_sizes_the_preprocessor_cannot_pad(exported):
    config, checkpoint, out, _ = exported
    with pytest.raises(SystemExit, match="size_divisor"):
        load_tool("export").main(
            [str(config), str(checkpoint), "--out", str(out), "--shape", "33", "64"]
        )


@pytest.mark.skipif(TRT_REASON is not None, reason=f"TensorRT path: {TRT_REASON}")
def test_tensorrt_engine_matches_onnx_runtime(exported, tmp_path):
    _, _, out, _ = exported
    engine = tmp_path / "model.plan"
    load_tool_from_deploy("build_engine").main([str(out / "model.onnx"), "--out", str(engine)])
    results = load_tool_from_deploy("infer")
    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), image)
    trt = results.main([str(engine), str(path), "--out", str(tmp_path / "trt"), "--backend", "trt"])
    ort = results.main([str(out / "model.onnx"), str(path), "--out", str(tmp_path / "ort")])
    np.testing.assert_allclose(trt["scene"]["depth"], ort["scene"]["depth"], atol=1e-3)


def test_build_engine_says_why_it_cannot_run_here(exported):
    if TRT_REASON is None:
        pytest.skip("TensorRT is available here; the engine test covers the build")
    _, _, out, _ = exported
    with pytest.raises(SystemExit, match="cannot build a TensorRT engine here"):
        load_tool_from_deploy("build_engine").main([str(out / "model.onnx"), "--out", "x.plan"])


def test_benchmarks_report_every_backend(exported, tmp_path):
    config, checkpoint, out, _ = exported
    report = load_tool("benchmark").main(
        [str(config), str(checkpoint), "--runs", "3", "--warmup", "1", "--calib-samples", "2"]
        + ["--threads", "1", "--out", str(tmp_path / "bench.json")]
    )
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved["results"]) == {"pytorch_eager", "onnxruntime_fp32", "onnxruntime_int8"}
    assert saved["input"] == [1, 3, 32, 64] and saved["matmul_peak_gflops"] > 0
    for timing in report["results"].values():
        assert 0 < timing["median_ms"] <= timing["p90_ms"]
        assert 0 < timing["fraction_of_peak"] < 1
    assert set(report["ratios"]) == {"onnxruntime_fp32_vs_eager", "int8_vs_fp32"}

    latency = load_tool_from_deploy("benchmark").main(
        [str(out / "model.json"), "--runs", "3", "--warmup", "1", "--out", str(tmp_path / "d.json")]
    )
    assert latency["network"]["runs"] == 3 and latency["images_per_s"] > 0
    with pytest.raises(SystemExit, match="takes batch 1, not 2"):
        load_tool_from_deploy("benchmark").main([str(out / "model.json"), "--batch", "2"])


def test_jetpack5_needs_layernorm_decomposed():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    scale = helper.make_tensor("g", TensorProto.FLOAT, [4], [1.0] * 4)
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln")
    model = _graph([node], [x], [y], [scale])
    assert [str(p) for p in check_graph(model, ["8.5"])] == [
        "ln (LayerNormalization): not supported by TensorRT 8.5"
    ]
    assert check_graph(model, ["8.6", "10.3"]) == []


def test_simplified_dynamic_batch_export(exported, tmp_path):
    config, checkpoint, _, _ = exported
    out = tmp_path / "dyn"
    load_tool("export").main(
        [str(config), str(checkpoint), "--out", str(out), "--dynamic", "4", "--simplify"]
        + ["--parity-samples", "2"]
    )
    sidecar = json.loads((out / "model.json").read_text())
    counts = sidecar["simplified"]
    assert counts["nodes_after"] < counts["nodes_before"]
    assert sidecar["batch_profile"] == {"min": 1, "opt": 1, "max": 4}
    assert sidecar["input"]["shape"] == ["batch", 3, 32, 64]
    runner = OrtRunner(load_deployment(out), providers=["CPUExecutionProvider"])
    images = [np.full((32, 64, 3), v, np.uint8) for v in (0, 90, 255)]
    batched = runner.predict(images)
    for image, prediction in zip(images, batched, strict=True):
        single = runner.predict([image])[0]
        np.testing.assert_allclose(prediction["depth"], single["depth"], atol=1e-5)
    assert check_graph(str(out / "model.onnx")) != []  # no profile given: the batch axis
    assert check_graph(str(out / "model.onnx"), profiles={"image": {0: (1, 1, 4)}}) == []
