"""The slimmable tools on a tiny checkpoint: search, deploy statically, benchmark, controllability,
and the config of a width trained alone."""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import ROOT, TINY_OPTIONS, load_tool

from vision_mtl.apis import init_model, load_config
from vision_mtl.models.builder import build_model
from vision_mtl.utils import atomic_write_bytes

CONFIG = ROOT / "configs/slimmable/slimmable_resnet18_1xb8-800_synthscenes-nyud-96x128.py"
OPTIONS = {k: v for k, v in TINY_OPTIONS.items() if not k.startswith("model.backbone")}
SMALL = ["--num-val", "4", "--calib-batches", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny slimmable config file and a checkpoint of its (seeded, untrained) model."""
    root = tmp_path_factory.mktemp("slim_tools")
    cfg = load_config(CONFIG, dict(OPTIONS), work_dir=str(root / "work"))
    config = root / "slim.py"
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    buffer = io.BytesIO()
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta={})), buffer)
    checkpoint = root / "slim.pth"
    atomic_write_bytes(buffer.getvalue(), checkpoint)
    return config, checkpoint, root


def test_search_stays_within_budget_and_deploys_a_static_checkpoint(tiny, capsys):
    config, checkpoint, root = tiny
    out, static = root / "search.json", root / "static.pth"
    argv = [str(config), str(checkpoint), "--budget-macs", "40M", "--prefs", "semseg=3,depth=1"]
    report = load_tool("search_widths").main(
        [*argv, *SMALL, "--uniform", "--out", str(out), "--save-static", str(static)]
    )
    printed = capsys.readouterr().out
    assert "chosen:" in printed and "uniform scaling:" in printed
    saved = json.loads(out.read_text())
    assert saved["search"]["configuration"] == report["search"]["configuration"]
    assert all(row["macs"] <= 40e6 for row in saved["search"]["table"])
    assert saved["uniform"]["macs"] <= 40e6 and saved["full"]["macs"] > 40e6
    chosen = saved["search"]["configuration"]
    assert chosen["semseg"] >= chosen["depth"]  # the preferred task never gets the narrower head
    # the static checkpoint loads strictly through the slimmable config, as a plain model
    model = init_model(str(config), str(static), device="cpu")
    assert type(model).__name__ == "MultiTaskModel"
    assert model.pruning_record["configuration"] == chosen
    outputs = model(torch.zeros(1, 3, 32, 64), mode="tensor")
    assert set(outputs) == {"semseg", "depth", "normals", "edge"}
    # ... and exports through tools/export.py unchanged (TensorRT check and ORT parity inside)
    exported = load_tool("export").main([str(config), str(static), "--out", str(root / "onnx")])
    assert max(exported["max_abs_diff"].values()) <= 1e-4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget-macs", "1k"], "no configuration fits the budget of 1,000.0 MACs"),
        (["--budget-macs", "-3"], "--budget-macs: expected a positive number"),
        (["--budget-macs", "40M", "--prefs", "sky=2"], "--prefs: unknown task 'sky'"),
        (["--budget-macs", "40M", "--prefs", "depth"], "--prefs: expected TASK=NUMBER"),
    ],
)
def test_search_refuses_bad_requests_by_name(tiny, extra, message):
    config, checkpoint, _ = tiny
    with pytest.raises(SystemExit, match=message):
        load_tool("search_widths").main([str(config), str(checkpoint), *extra, *SMALL])


def test_search_refuses_a_plain_config(tiny, tiny_cfg, tmp_path):
    _, checkpoint, _ = tiny
    config = tmp_path / "plain.py"
    tiny_cfg.dump(str(config))
    with pytest.raises(SystemExit, match="width search needs a SlimmableMultiTaskModel"):
        load_tool("search_widths").main([str(config), str(checkpoint), "--budget-macs", "1G"])


def test_controllability_reports_correlations_and_hypervolume(tiny, capsys):
    config, checkpoint, root = tiny
    out = root / "control.json"
    argv = [str(config), str(checkpoint), "--budget-macs", "40M", "--num-prefs", "3"]
    report = load_tool("analysis_tools/controllability").main([*argv, *SMALL, "--out", str(out)])
    assert len(report["runs"]) == 3 and all(r["macs"] <= 40e6 for r in report["runs"])
    assert set(report["controllability"]["search"]["per_task"]) == set(report["tasks"])
    assert report["hypervolume"]["search"] >= 0 and "mean" in capsys.readouterr().out
    assert json.loads(out.read_text())["num_prefs"] == 3  # strict JSON (nan written as null)


def test_benchmark_times_every_configuration_interleaved(tiny, tmp_path):
    config, checkpoint, _ = tiny
    argv = [str(config), str(checkpoint), "--search", "40M:edge=2", "--rounds", "3"]
    report = load_tool("analysis_tools/benchmark_slimmable").main([*argv, *SMALL])
    rows = report["rows"]
    assert list(rows) == ["full", "half", "narrowest", "40M:edge=2"]
    assert rows["full"]["latency_ratio"] == 1.0 and rows["full"]["delta_m"] == 0.0
    assert rows["half"]["macs"] < rows["full"]["macs"] and rows["40M:edge=2"]["macs"] <= 40e6
    assert all(row["latency"]["runs"] == 3 for row in rows.values())
    # Δm against a model trained alone: zero against the row's own metrics (test.py's format)
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps({"model": rows["half"]["metrics"]}))
    again = load_tool("analysis_tools/benchmark_slimmable").main(
        [str(config), str(checkpoint), "--rounds", "1", "--alone", f"half={alone}", *SMALL]
    )
    assert again["rows"]["half"]["delta_m_vs_alone"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(SystemExit, match="--alone: no configuration named 'quarter'"):
        load_tool("analysis_tools/benchmark_slimmable").main(
            [str(config), str(checkpoint), "--alone", f"quarter={alone}"]
        )


def test_alone_config_is_the_plain_model_at_one_width(tiny, tmp_path):
    config, _, _ = tiny
    tool = load_tool("analysis_tools/slimmable_alone_config")
    half = tool.main([str(config), "--width", "0.5", "--out", str(tmp_path / "half.py")])
    model = build_model(load_config(half).model)
    assert type(model).__name__ == "MultiTaskModel"
    assert model.decoder.fuse[0].out_channels == 8  # 16 decoder channels at width 0.5
    features = model.backbone(torch.zeros(1, 3, 32, 64))
    assert [f.shape[1] for f in features] == [32, 64, 128, 256]
    with pytest.raises(SystemExit, match=r"--width 0.3 is not one of the config's widths"):
        tool.main([str(config), "--width", "0.3", "--out", str(tmp_path / "bad.py")])
