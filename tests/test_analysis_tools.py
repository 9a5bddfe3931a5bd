"""The analysis tools on real tiny runs: confusion matrices, training curves, published models.

Two tiny quickstart trainings (4 iterations each, through tools/train.py) are shared by every
test; each tool runs through its ``main(argv)`` as a user calls it.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, load_tool

from vision_mtl.apis import init_model
from vision_mtl.compress import prune
from vision_mtl.evaluation import MultiTaskMetric
from vision_mtl.evaluation.confusion import metric_confusion
from vision_mtl.tasks import get_task
from vision_mtl.workflows.confusion import label_metrics
from vision_mtl.workflows.pruning_steps import save_pruned_checkpoint


def analysis_tool(name: str):
    """Import ``tools/analysis_tools/<name>.py`` so a test calls its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(
        f"analysis_{name}", ROOT / "tools/analysis_tools" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny config file and two work dirs trained 4 iterations each (learning rates 1e-3
    and 3e-3, so their curves differ)."""
    from conftest import QUICKSTART, TINY_OPTIONS

    from vision_mtl.apis import load_config

    tmp = tmp_path_factory.mktemp("analysis")
    config = tmp / "tiny.py"
    load_config(QUICKSTART, dict(TINY_OPTIONS), work_dir=str(tmp / "unused")).dump(str(config))
    train = load_tool("train")
    work_dirs = [tmp / "run_a", tmp / "run_b"]
    train.main([str(config), "--work-dir", str(work_dirs[0])])
    lr = "optim_wrapper.optimizer.lr=0.003"
    train.main([str(config), "--work-dir", str(work_dirs[1]), "--cfg-options", lr])
    return config, work_dirs


def _read_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    rows = list(csv.reader(path.read_text().splitlines()))
    header, body = rows[0], rows[1:]
    return header[1:], [r[0] for r in body], np.array([[float(v) for v in r[1:]] for r in body])


def test_confusion_matrix_agrees_with_the_reported_metrics(runs, tmp_path, capsys):
    config, work_dirs = runs
    checkpoint = work_dirs[0] / "iter_4.pth"
    out = tmp_path / "confusion"
    written = analysis_tool("confusion_matrix").main(
        [str(config), str(checkpoint), "--out", str(out), "--normalize"]
    )
    assert list(written) == ["semseg"]  # the quickstart's only label task
    assert "semseg: " in capsys.readouterr().out
    reported = load_tool("test").main([str(config), str(checkpoint), "--work-dir", str(tmp_path)])
    metrics = reported["model"]

    columns, rows, counts = _read_csv(out / "semseg_confusion.csv")
    model = init_model(config, checkpoint, device="cpu")
    names = list(model.dataset_meta["class_names"]["semseg"])
    assert columns == rows == names
    # Every labelled test pixel once, ignore pixels not at all.
    from mmengine.registry import DefaultScope

    from vision_mtl.registry import DATASETS, SCOPE

    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(model.cfg.test_dataloader.dataset)
    ignore = get_task("semseg").ignore_value
    labelled = sum(int((dataset[i]["targets"]["semseg"] != ignore).sum()) for i in range(8))
    assert counts.sum() == labelled
    tp = np.diag(counts)
    assert tp.sum() / counts.sum() * 100 == pytest.approx(metrics["semseg/aAcc"], abs=1e-9)
    union = counts.sum(0) + counts.sum(1) - tp
    iou = tp[union > 0] / union[union > 0] * 100
    assert iou.mean() == pytest.approx(metrics["semseg/mIoU"], abs=1e-9)

    _, _, shares = _read_csv(out / "semseg_confusion_normalized.csv")
    totals = counts.sum(1)
    assert np.allclose(shares.sum(1), np.where(totals > 0, 1.0, 0.0), atol=1e-5)
    picture = cv2.imread(str(out / "semseg_confusion.png"))
    assert picture is not None and picture.shape[0] > 7 * 34 and picture.shape[1] > 7 * 34

    with pytest.raises(SystemExit, match=r"task\(s\) \['depth'\] have no confusion .*'semseg'"):
        analysis_tool("confusion_matrix").main(
            [str(config), str(checkpoint), "--out", str(out), "--task", "depth"]
        )


def test_every_label_task_gets_a_confusion_matrix():
    metric = MultiTaskMetric(["semseg", "human_parts", "depth"])
    metric.dataset_meta = dict(num_classes=dict(semseg=3, human_parts=2))
    found = label_metrics([metric])
    assert sorted(found) == ["human_parts", "semseg"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        gt = {"semseg": rng.integers(0, 3, (4, 5)), "human_parts": rng.integers(0, 2, (4, 5))}
        gt["semseg"][0, 0] = 255  # an ignore pixel: not counted
        pred = {t: rng.integers(0, n, (4, 5)) for t, n in (("semseg", 3), ("human_parts", 2))}
        for sub in found.values():
            sub.process(None, [dict(pred=pred, gt=gt)])
    semseg = metric_confusion(found["semseg"], found["semseg"].results)
    parts = metric_confusion(found["human_parts"], found["human_parts"].results)
    assert semseg.counts.sum() == 3 * 19 and parts.counts.sum() == 3 * 20
    assert semseg.class_names == ("0", "1", "2") and parts.counts.shape == (2, 2)


def _scalars(work_dir: Path) -> list[dict]:
    (path,) = work_dir.glob("*/vis_data/scalars.json")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_analyze_logs_overlays_runs(runs, tmp_path, capsys):
    _, work_dirs = runs
    out = tmp_path / "curves.png"
    tool = analysis_tool("analyze_logs")
    plotted = tool.main(
        [*map(str, work_dirs), "--keys", "loss", "lr", "semseg/mIoU", "--out", str(out)]
    )
    assert list(plotted) == ["run_a", "run_b"] and "wrote" in capsys.readouterr().out
    for label, work_dir in zip(plotted, work_dirs, strict=True):
        lines = _scalars(work_dir)
        assert plotted[label]["loss"] == {r["step"]: r["loss"] for r in lines if "loss" in r}
        assert sorted(plotted[label]["loss"]) == [2, 4]  # logger interval 2 of 4 iterations
        val = [r for r in lines if "semseg/mIoU" in r]
        assert plotted[label]["semseg/mIoU"] == {4: val[0]["semseg/mIoU"]}
    assert set(plotted["run_a"]["lr"].values()) == {0.001}
    assert set(plotted["run_b"]["lr"].values()) == {0.003}
    picture = cv2.imread(str(out))[..., ::-1]
    assert picture.shape[0] > 3 * 240  # the legend and one panel per key
    for colour in ((31, 119, 180), (255, 127, 14)):  # both runs are drawn
        assert (np.abs(picture.astype(int) - colour).sum(-1) == 0).any()

    with pytest.raises(SystemExit, match=r"\['loss_x'\] are not logged .*'loss_semseg'"):
        tool.main([str(work_dirs[0]), "--keys", "loss_x", "--out", str(out)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=f"work dir '{empty}' holds no .*scalars.json"):
        tool.main([str(work_dirs[0]), str(empty), "--keys", "loss", "--out", str(out)])


def test_publish_model_strips_training_state(runs, tmp_path, capsys):
    config, work_dirs = runs
    source = work_dirs[0] / "iter_4.pth"
    tool = analysis_tool("publish_model")
    published = tool.main([str(source), str(tmp_path / "release")])
    assert "MB ->" in capsys.readouterr().out
    path = published.path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"iter_4-{digest[:8]}.pth" and published.sha256 == digest
    assert published.size_before == source.stat().st_size
    assert published.size_after == path.stat().st_size < published.size_before / 2
    assert published.dropped == ("message_hub", "optimizer", "param_schedulers")
    assert not list(path.parent.glob(".*.tmp"))  # written through a temporary file

    # A fresh interpreter, no allow-listed types: the file is tensors and plain values only.
    code = (
        "import sys, torch; c = torch.load(sys.argv[1], weights_only=True); "
        "print(sorted(c), c['meta']['dataset_meta']['class_names']['semseg'][0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["['meta',", "'state_dict']", "floor"]

    original = torch.load(source, map_location="cpu")
    model = init_model(config, path, device="cpu")  # strict
    assert model.dataset_meta == original["meta"]["dataset_meta"]
    for key, value in original["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key

    # A pruned checkpoint keeps its record and rebuilds its architecture from the file alone.
    full = init_model(config, source, device="cpu")
    record = prune(full, torch.zeros(1, 3, 32, 64), 0.3, protected=list(full.cfg.pruning.protected))
    pruned = save_pruned_checkpoint(full, record, tmp_path / "pruned.pth")
    published = tool.main([str(pruned), str(tmp_path / "release")])
    assert published.path.name.startswith("pruned-")
    assert torch.load(published.path, weights_only=True)["meta"]["pruning"] == record
    rebuilt = init_model(config, published.path, device="cpu")
    assert rebuilt.pruning_record == record
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in full.parameters())

    with pytest.raises(SystemExit, match="does not exist"):
        tool.main([str(tmp_path / "missing.pth"), str(tmp_path / "release")])


def test_scalars_of_a_resumed_run_and_non_finite_values(tmp_path):
    from vision_mtl.workflows.logs import draw_curves, read_scalars

    def log(stamp: str, *records: dict) -> Path:
        path = tmp_path / "work" / stamp / "vis_data/scalars.json"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    log("20260101_000000", dict(loss=3.0, iter=2, step=2), dict(loss=2.0, iter=4, step=4))
    log(  # resumed at 4: continues in a new timestamp dir; a NaN metric from validation
        "20260101_010000",
        dict(loss=1.5, iter=4, step=4),
        dict(loss=1.0, time=0.5, iter=6, step=6),
        {"semseg/mIoU": float("nan"), "time": 9.0, "step": 6},
    )
    (tmp_path / "work/20260101_020000/vis_data").mkdir(parents=True)  # a test run: no scalars
    scalars = read_scalars(tmp_path / "work")
    assert scalars["loss"] == {2: 3.0, 4: 1.5, 6: 1.0}  # the later file wins a repeated step
    assert scalars["time"] == {6: 0.5}  # from the training line, not the validation one
    assert np.isnan(scalars["semseg/mIoU"][6])
    picture = draw_curves({"run": scalars}, ["loss", "semseg/mIoU"])
    assert picture.ndim == 3 and picture.shape[0] > 2 * 240

    bad = log("20260101_030000", dict(loss=1.0, iter=8))
    with pytest.raises(ValueError, match=f"'{bad}' line 1 is not a JSON object with an integer"):
        read_scalars(tmp_path / "work")
