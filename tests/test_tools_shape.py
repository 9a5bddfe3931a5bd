"""Issue 16: one answer to "what input size does this config use", and ``--shape`` in every tool.

The Cityscapes configs pad their test images (1024x2048) instead of fixing a canvas, so they
have no input size of their own: ``tools/prune.py`` and ``tools/benchmark.py`` told the user to
"pass --shape H W" and had no such flag. Here the real Cityscapes config (with a toy ViT and a
toy Cityscapes folder in the site's layout, where a tool reads data) goes through every tool:
without ``--shape`` each stops in seconds with one sentence naming the flag, with it each gets
past the size question. Full-size models are only built on the meta device.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from conftest import QUICKSTART, ROOT, load_tool

from vision_mtl.apis import init_model, load_config
from vision_mtl.compress.pruning import PruningError
from vision_mtl.input_size import InputSizeError, config_input_size
from vision_mtl.workflows.compare import compare_configs, format_comparison_table
from vision_mtl.workflows.prune import PruneSettings, prune_workflow


def _config(pattern: str):
    """The one config under configs/baseline matching ``pattern`` (names vary by schedule)."""
    (path,) = sorted((ROOT / "configs/baseline").glob(pattern))
    return path


CITYSCAPES = _config("baseline_vit-b16_*_cityscapes-512x1024.py")
NYUD = _config("baseline_vit-b16_*_nyud-448x576.py")
NO_SIZE = "sets neither model.data_preprocessor.size nor test_dataloader.dataset.image_size"
TOOLS = ("export", "get_flops", "prune", "benchmark", "benchmark_decoders")


def _required(tool: str) -> list[str]:
    """The least argv each tool parses (nothing is run)."""
    return {
        "export": ["c.py", "c.pth", "--out", "x"],
        "get_flops": ["c.py"],
        "prune": ["c.py", "c.pth", "--ratio", "0.3", "--out", "x"],
        "benchmark": ["c.py"],
        "benchmark_decoders": ["--multitask", "a.py", "--single-task", "b.py"],
    }[tool]


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_parses_shape_and_refuses_a_non_positive_one(tool, capsys):
    module = load_tool(tool)
    assert module.parse_args(_required(tool)).shape is None
    assert module.parse_args([*_required(tool), "--shape", "64", "128"]).shape == [64, 128]
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args([*_required(tool), "--shape", "0", "128"])
    assert exit_info.value.code == 2
    assert "argument --shape: must be a positive integer, got 0" in capsys.readouterr().err


def test_the_size_comes_from_shape_then_the_preprocessor_then_the_test_set():
    assert config_input_size(load_config(NYUD)) == (448, 576)  # preprocessor canvas
    assert config_input_size(load_config(QUICKSTART)) == (96, 128)  # SynthScenes image size
    odd = load_config(QUICKSTART, {"test_dataloader.dataset.image_size": (90, 100)})
    assert config_input_size(odd) == (96, 128)  # padded up to size_divisor 32, as fed
    assert config_input_size(load_config(NYUD), [64, 96]) == (64, 96)  # --shape wins
    cityscapes = load_config(CITYSCAPES)
    with pytest.raises(InputSizeError, match=rf"config 'c.py' {NO_SIZE}.*; pass --shape H W$"):
        config_input_size(cityscapes, None, "c.py")
    assert config_input_size(cityscapes, (512, 1024)) == (512, 1024)
    with pytest.raises(InputSizeError, match="--shape 500 1000 must be positive multiples of the "):
        config_input_size(cityscapes, (500, 1000))


def _write_cityscapes(root, count: int = 2, size: tuple[int, int] = (64, 128)) -> None:
    """A Cityscapes folder in the site's layout: images, label ids and uint16 disparity."""
    rng = np.random.default_rng(0)
    h, w = size
    for split in ("train", "val"):
        for i in range(count):
            stem = f"aachen/aachen_{i:06d}_000019"
            files = {
                "leftImg8bit": ("_leftImg8bit.png", rng.integers(0, 255, (h, w, 3), np.uint8)),
                "gtFine": ("_gtFine_labelIds.png", rng.choice([7, 8, 23, 26], (h, w))),
                "disparity": ("_disparity.png", rng.integers(1, 20000, (h, w))),
            }
            for kind, (suffix, array) in files.items():
                path = root / kind / split / f"{stem}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                dtype = np.uint16 if kind == "disparity" else np.uint8
                cv2.imwrite(str(path), array.astype(dtype))


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    """The real Cityscapes config with a toy ViT-Tiny/8 and a toy data root; its weights."""
    tmp = tmp_path_factory.mktemp("cityscapes_shape")
    _write_cityscapes(tmp / "data")
    options = {
        "model.backbone.model_name": "vit_tiny_patch16_224",
        "model.backbone.out_indices": [0, 1],
        "model.backbone.pretrained": None,
        "model.backbone.model_kwargs": dict(
            img_size=(64, 128), embed_dim=32, depth=2, num_heads=2, patch_size=8
        ),
        "model.decoder.channels": 16,
    }
    for split in ("train", "val", "test"):
        options[f"{split}_dataloader.dataset.data_root"] = str(tmp / "data")
        options[f"{split}_dataloader.num_workers"] = 0
        options[f"{split}_dataloader.persistent_workers"] = False
    cfg = load_config(CITYSCAPES, options, work_dir=str(tmp / "work"))
    assert "size" not in cfg.model.data_preprocessor  # the real config's point: no canvas
    config = tmp / "cityscapes_tiny.py"
    cfg.dump(str(config))
    torch.manual_seed(0)
    checkpoint = tmp / "model.pth"
    torch.save(dict(state_dict=init_model(config, None, "cpu").state_dict(), meta={}), checkpoint)
    return config, checkpoint


def test_benchmark_runs_the_cityscapes_config_with_shape(cityscapes, tmp_path):
    config, checkpoint = cityscapes
    tool = load_tool("benchmark")
    args = [str(config), str(checkpoint), "--runs", "2", "--warmup", "1", "--threads", "1"]
    with pytest.raises(SystemExit, match=rf"{NO_SIZE}, so it has no input size; pass --shape"):
        tool.main(args)
    out = tmp_path / "bench.json"
    report = tool.main([*args, "--calib-samples", "2", "--shape", "64", "128", "--out", str(out)])
    assert report["input"] == [1, 3, 64, 128]
    assert set(report["results"]) == {"pytorch_eager", "onnxruntime_fp32", "onnxruntime_int8"}
    assert json.loads(out.read_text())["macs"] == report["macs"] > 0


def test_prune_gets_past_the_size_question_with_shape(cityscapes, tmp_path):
    config, _ = cityscapes
    other = tmp_path / "other.pth"
    torch.save(dict(state_dict={"backbone.x": torch.zeros(1)}, meta={}), other)
    out = tmp_path / "out"
    argv = [str(config), str(other), "--ratio", "0.3", "--out", str(out)]
    with pytest.raises(SystemExit, match=rf"{NO_SIZE}, so it has no input size; pass --shape"):
        load_tool("prune").main(argv)
    # With --shape the size is settled; the next check (the checkpoint) is what stops it.
    with pytest.raises(SystemExit, match="does not fit config"):
        load_tool("prune").main([*argv, "--shape", "64", "128"])
    # The same run from Python: the workflow raises what the tool prints.
    settings = PruneSettings(ratio=0.3, out=out, shape=(64, 100))
    with pytest.raises(PruningError, match="--shape 64 100 must be positive multiples"):
        prune_workflow(config, other, settings)
    assert not out.exists()


def test_get_flops_counts_the_full_cityscapes_model_at_shape_on_meta():
    tool = load_tool("get_flops")
    with pytest.raises(SystemExit, match=rf"{NO_SIZE}, so it has no input size; pass --shape"):
        tool.main([str(CITYSCAPES)])  # was silently 512x512
    result = tool.main([str(CITYSCAPES), "--shape", "512", "1024"])
    assert result["input"] == [1, 3, 512, 1024]
    assert 85e6 < result["params"]["total"] < 100e6  # ViT-B/16 and the baseline decoder
    assert result["macs"]["backbone"] > 100e9


def test_export_and_benchmark_decoders_ask_for_shape_before_any_work(cityscapes, tmp_path):
    config, checkpoint = cityscapes
    with pytest.raises(SystemExit, match=rf"{NO_SIZE}.*pass --shape H W"):
        load_tool("export").main([str(config), str(checkpoint), "--out", str(tmp_path / "x")])
    work = tmp_path / "work"
    argv = ["--multitask", str(config), "--single-task", str(QUICKSTART)]
    with pytest.raises(SystemExit, match=rf"{NO_SIZE}.*pass --shape H W"):
        load_tool("benchmark_decoders").main([*argv, "--work-root", str(work)])
    assert not (tmp_path / "x").exists() and not work.exists()  # nothing trained or exported


def test_compare_configs_counts_each_config_at_shape(cityscapes, tmp_path):
    """compare_configs with a stand-in for the train and test processes (the only double)."""
    config, _ = cityscapes
    metrics = {
        str(config): {"semseg/mIoU": 30.0, "disparity/rmse": 6.0},
        "semseg.py": {"semseg/mIoU": 40.0},
        "disparity.py": {"disparity/rmse": 5.0},
    }

    def run(name, work_root, rerun, root):
        return {"config": name, "train_seconds": 0.0, "metrics": metrics[name]}

    report = compare_configs(
        [str(config)], ["semseg.py", "disparity.py"], tmp_path, shape=(64, 128), run=run
    )
    result = report["multitask"][0]
    assert report["references"] == {"semseg": 40.0, "disparity": 5.0}
    assert result["input"] == [1, 3, 64, 128] and result["macs"]["total"] > 0
    assert result["delta"]["multitask/delta_m"] == pytest.approx((-25.0 - 20.0) / 2)
    assert format_comparison_table(report)[2].endswith("| -22.50 |")


@pytest.mark.parametrize("tool", ["prune", "benchmark"])
def test_the_command_line_names_shape_in_one_sentence(cityscapes, tmp_path, tool):
    config, checkpoint = cityscapes
    argv = [str(config), str(checkpoint)]
    argv += ["--ratio", "0.3", "--out", str(tmp_path / "out")] if tool == "prune" else []
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / f"{tool}.py"), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith("pass --shape H W"), result.stderr
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - start < 60  # no model evaluated or exported


def test_analysis_tools_run_from_their_new_home(tmp_path, monkeypatch, capsys):
    import importlib.util
    import os

    for variable in ("OMP", "OPENBLAS", "MKL", "NUMEXPR"):  # the tools set these at import
        monkeypatch.setenv(
            f"{variable}_NUM_THREADS", os.environ.get(f"{variable}_NUM_THREADS", "1")
        )
    monkeypatch.setenv("VECLIB_MAXIMUM_THREADS", os.environ.get("VECLIB_MAXIMUM_THREADS", "1"))

    def tool(name):
        path = ROOT / "tools/analysis_tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # worker processes find it by name
        spec.loader.exec_module(module)
        return module

    boundary = tool("benchmark_boundary")
    out = tmp_path / "boundary.json"
    report = boundary.main(
        ["--images", "2", "--size", "24x32", "--nproc", "1", "--modes", "fast", "--out", str(out)]
    )
    assert json.loads(out.read_text())["split"]["size"] == [24, 32] and "fast" in report
    with pytest.raises(SystemExit):
        boundary.main(["--size", "24by32"])
    assert "size must be HxW, two positive integers" in capsys.readouterr().err
    assert tool("benchmark_pipeline").main.__module__ == "benchmark_pipeline"  # imports resolve
