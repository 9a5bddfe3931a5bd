"""Quantization-aware training: fake quantization that trains, round-trips through checkpoints,
and exports as a Q/DQ graph that passes the TensorRT check and ONNX Runtime parity."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import ROOT, load_tool
from onnx import numpy_helper
from test_pruning import tiny_config_and_checkpoint
from test_reparam import _settled
from timm.layers import Conv2dSame

from vision_mtl.apis import init_model
from vision_mtl.compress import qat
from vision_mtl.export import check_graph
from vision_mtl.export.parity import check_parity
from vision_mtl.export.runtime import OrtRunner, load_deployment


@pytest.fixture(scope="module")
def tiny_qat(tmp_path_factory):
    """tools/qat.py run on the tiny quickstart: two fine-tuning iterations."""
    tmp = tmp_path_factory.mktemp("qat")
    config, checkpoint = tiny_config_and_checkpoint(tmp)
    out = tmp / "out"
    report = load_tool("qat").main(
        [str(config), str(checkpoint), "--out", str(out), "--iters", "2"]
        + ["--calib-samples", "4", "--eval-samples", "4", "--runs", "2", "--parity-samples", "2"]
    )
    return config, checkpoint, out, report


def _calibrated(model, canvas=(32, 64)):
    batches = [
        torch.randn(2, 3, *canvas, generator=torch.Generator().manual_seed(i)) for i in (0, 1)
    ]
    keep = qat.output_writers(model, batches[0])
    return qat.make_record(qat.calibrate(model, batches, "percentile", keep), keep, "percentile")


def test_weights_round_to_the_per_channel_int8_grid():
    weight = torch.randn(6, 4, 3, 3)
    quantized = qat.fake_quant_weight(weight, 0)
    scale = weight.abs().amax(dim=(1, 2, 3)) / 127
    steps = quantized / scale.view(-1, 1, 1, 1)
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert torch.allclose(steps.abs().amax(dim=(1, 2, 3)), torch.full((6,), 127.0))
    assert (quantized - weight).abs().max() <= scale.max() / 2 + 1e-6


def test_gradients_pass_straight_through():
    layer = qat.QuantConv2d.from_float(torch.nn.Conv2d(3, 4, 3), 0.05)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    layer(x).square().sum().backward()
    assert layer.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_calibration_methods():
    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)

        def forward(self, x, mode="tensor"):
            return {"out": self.conv(x) * 1.0}

    x = torch.linspace(-1, 1, 10**6).view(1, 1, 1000, 1000)
    x[0, 0, 0, 0] = 100.0  # one outlier in a million: above the 99.999th percentile
    top = qat.calibrate(Probe(), [x], "max")["conv"]
    robust = qat.calibrate(Probe(), [x], "percentile")["conv"]
    assert top == pytest.approx(100.0 / 127)
    assert robust == pytest.approx(1.0 / 127, rel=0.01)  # the outlier clipped, the bulk kept
    with pytest.raises(qat.QatError, match="'entropy' is not one of"):
        qat.calibrate(Probe(), [x], "entropy")


def test_the_record_rebuilds_the_quantized_model_from_a_plain_state_dict(tmp_path):
    config, checkpoint = tiny_config_and_checkpoint(tmp_path)
    model = init_model(config, checkpoint, device="cpu")
    keys = list(model.state_dict())
    record = _calibrated(model)
    qat.apply_record(model, record)
    assert list(model.state_dict()) == keys  # the checkpoint format does not change
    assert any(isinstance(m, qat.QuantConv2d) for m in model.modules())
    saved = tmp_path / "qat.pth"
    torch.save(dict(state_dict=model.state_dict(), meta=dict(qat=record)), saved)
    rebuilt = init_model(config, saved, device="cpu")
    image = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        expected, actual = model.eval()(image, mode="tensor"), rebuilt(image, mode="tensor")
    assert rebuilt.qat_record == record
    for task, value in expected.items():
        assert torch.equal(actual[task], value), task


def test_a_record_that_does_not_fit_is_refused(tmp_path):
    config, checkpoint = tiny_config_and_checkpoint(tmp_path)
    model = init_model(config, checkpoint, device="cpu")
    record = _calibrated(model)
    first = next(iter(record["input_scales"]))
    wrong = dict(record, input_scales={**record["input_scales"], "decoder.nowhere": 0.1})
    with pytest.raises(qat.QatError, match=r"not in the model: \['decoder.nowhere'\]"):
        qat.apply_record(model, wrong)
    missing = dict(
        record, input_scales={k: v for k, v in record["input_scales"].items() if k != first}
    )
    with pytest.raises(qat.QatError, match=rf"without a scale: \['{first}'\]"):
        qat.apply_record(model, missing)
    with pytest.raises(qat.QatError, match="format 'other', expected 'vision_mtl.qat/1'"):
        qat.apply_record(model, dict(record, format="other"))


def test_layers_it_cannot_reproduce_are_refused_not_skipped():
    model = torch.nn.Sequential(Conv2dSame(3, 4, 3, stride=2))
    with pytest.raises(qat.QatError, match="'0' is a Conv2dSame, a subclass of Conv2d"):
        qat.quantizable_layers(model)


def test_a_multi_branch_backbone_trains_folded():
    model = _settled("repvit_m0_9")
    record = qat.make_record(
        qat.calibrate(model, [torch.randn(2, 3, 64, 96)]), [], "percentile", folded=True
    )
    # the record was calibrated on the multi-branch model, so it names its layers: refused
    with pytest.raises(qat.QatError, match="does not fit the model"):
        qat.apply_record(_settled("repvit_m0_9"), record)
    folded = _settled("repvit_m0_9")
    qat.fold_backbone(folded)
    record = qat.make_record(
        qat.calibrate(folded, [torch.randn(2, 3, 64, 96)]), [], "percentile", folded=True
    )
    rebuilt = qat.apply_record(_settled("repvit_m0_9"), record)
    assert sum(1 for _ in rebuilt.modules()) < sum(1 for _ in _settled("repvit_m0_9").modules())
    assert sorted(record["input_scales"]) == sorted(
        n for n, m in rebuilt.named_modules() if isinstance(m, qat._Quantized)
    )


def test_qat_exports_a_qdq_graph_that_passes_the_checks(tiny_qat):
    config, _, out, report = tiny_qat
    assert sorted(p.name for p in out.iterdir()) == [
        "fp32",
        "qat",
        "qat_report.json",
        "qat_start.pth",
        "work",
    ]
    graph = onnx.load(str(out / "qat" / "model.onnx"))
    ops = [n.op_type for n in graph.graph.node]
    record = torch.load(out / "qat_start.pth", weights_only=True)["meta"]["qat"]
    # a Q/DQ pair on the weight of every quantized layer, and on its input (layers reading the
    # same tensor share one: the exporter merges identical nodes)
    weights = {t.name for t in graph.graph.initializer}
    quantize = [n for n in graph.graph.node if n.op_type == "QuantizeLinear"]
    on_weights = [n for n in quantize if n.input[0] in weights]
    assert ops.count("DequantizeLinear") == len(quantize)
    assert len(on_weights) == len(record["input_scales"]) > 0
    assert 0 < len(quantize) - len(on_weights) <= len(record["input_scales"])
    assert check_graph(graph, ("8.5", "8.6", "10.3")) == []
    # the exported activation scales are the record's, unchanged by fine-tuning
    constants = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    constants.update(
        (n.output[0], numpy_helper.to_array(n.attribute[0].t))
        for n in graph.graph.node
        if n.op_type == "Constant" and n.attribute[0].type == onnx.AttributeProto.TENSOR
    )
    exported = [float(constants[n.input[1]]) for n in quantize if n.input[0] not in weights]
    for name, scale in record["input_scales"].items():
        assert any(abs(scale - e) <= 1e-6 * scale for e in exported), name
    # ONNX Runtime on the Q/DQ graph computes what the fine-tuned fake-quantized model does
    tuned = init_model(config, out / "work" / "iter_2.pth", device="cpu")
    assert tuned.qat_record == record
    deployment = load_deployment(out / "qat" / "model.json")
    image = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 64)).astype(np.float32)
    outputs = OrtRunner(deployment, providers=["CPUExecutionProvider"]).run(image)
    with torch.no_grad():
        expected = tuned(torch.from_numpy(image), mode="tensor")
    for task, value in expected.items():
        assert np.abs(outputs[task] - value.numpy()).max() <= 1e-3, task


def test_the_qat_graph_is_marked_quantized_and_self_checked_as_int8(tiny_qat, tmp_path):
    _, _, out, _ = tiny_qat
    deployment = load_deployment(out / "qat" / "model.json")
    section = deployment.sidecar["quantization"]
    assert section["format"] == "QDQ" and section["source"].startswith("quantization-aware")
    assert section["calibration"] == dict(method="percentile", samples=4, split="train")
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import self_check
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    args = self_check.parse_args([str(out / "qat"), "--out", str(tmp_path / "check")])
    assert self_check.check_inputs(args).precisions == ("int8",)
    # tools/export.py on a QAT checkpoint writes the same kind of graph, checked the same way
    config = out.parent / "tiny.py"
    load_tool("export").main(
        [str(config), str(out / "work" / "iter_2.pth"), "--out", str(tmp_path / "export")]
        + ["--parity-samples", "2"]
    )
    again = load_deployment(tmp_path / "export" / "model.json")
    assert again.sidecar["quantization"]["quantizer"] == "qat"
    assert again.sidecar["onnx_sha256"] == deployment.sidecar["onnx_sha256"]


def test_quantized_parity_tells_a_rounding_flip_from_a_wrong_graph(tiny_qat):
    config, _, out, _ = tiny_qat
    tuned = init_model(config, out / "work" / "iter_2.pth", device="cpu")
    deployment = load_deployment(out / "qat" / "model.json")
    assert check_parity(tuned, deployment, tuned.cfg, 2, 0.05, quantized=True).ok
    for module in tuned.modules():  # every input scale 4x: not the graph that was exported
        if isinstance(module, qat._Quantized):
            module.input_scale.mul_(4)
    report = check_parity(tuned, deployment, tuned.cfg, 2, 0.05, quantized=True)
    assert any("of the output range" in f for f in report.failures)


def test_the_report_scores_fp32_ptq_and_qat(tiny_qat):
    _, _, out, report = tiny_qat
    assert json.loads((out / "qat_report.json").read_text())["delta"] == report["delta"]
    assert set(report["metrics"]) == {"fp32", "ptq", "qat"} == set(report["latency"])
    for name in ("ptq", "qat"):
        assert np.isfinite(report["delta"][name]["multitask/delta_m"])
    assert report["eval_samples"] == 4 and report["calibration"]["samples"] == 4


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--lr-scale", "0"], r"--lr-scale must be > 0"),
        (["--parity-rtol", "1"], r"--parity-rtol must be in \(0, 1\), got 1.0"),
        (
            ["--cfg-options", "optim_wrapper.optimizer.lr=None"],
            r"optimizer.lr, which is None, not a positive number",
        ),
    ],
)
def test_bad_settings_fail_before_writing(tmp_path, extra, message):
    config, checkpoint = tiny_config_and_checkpoint(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=message):
        load_tool("qat").main([str(config), str(checkpoint), "--out", str(out), *extra])
    assert not out.exists()


def test_an_occupied_out_dir_or_a_qat_checkpoint_is_refused(tiny_qat, tmp_path):
    config, checkpoint, out, _ = tiny_qat
    with pytest.raises(SystemExit, match="exists and is not an empty directory"):
        load_tool("qat").main([str(config), str(checkpoint), "--out", str(out)])
    fresh = tmp_path / "again"
    with pytest.raises(SystemExit, match="is already quantization-aware"):
        load_tool("qat").main([str(config), str(out / "work" / "iter_2.pth"), "--out", str(fresh)])
    assert not fresh.exists()
