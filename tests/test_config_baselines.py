"""Δm references belong to the config's own backbone, dataset and task set.

The ViT-L/16, Swin-B, InvPT-L and TaskExpert-L configs once inherited the ViT-B/16 configs'
``baselines`` and so reported Δm against ViT-B/16 single-task figures. Each reference file in
configs/_base_/delta_m/ now says what it is for (``baselines_meta``), and every config's resolved
evaluators are checked against the config's own model and data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from mmengine.config import Config
from test_configs import CONFIGS, config_id

DELTA_M = sorted((ROOT / "configs/_base_/delta_m").glob("*.py"))
EVALUATORS = ("val_evaluator", "test_evaluator")


def backbone_of(cfg: Config) -> str:
    """The backbone as the resolved model config names it (the timm name, else the type)."""
    backbone = cfg.model.backbone
    return backbone.get("model_name") or backbone.type


def signature(cfg: Config) -> tuple[str, str, frozenset[str]]:
    """(backbone, dataset, tasks): what single-task references must have been measured on."""
    return backbone_of(cfg), cfg.test_dataloader.dataset.type, frozenset(cfg.model.tasks)


def baseline_problems(cfg: Config) -> list[str]:
    """Why the config's Δm references (if any) are not its own; empty when they are."""
    problems = []
    meta = cfg.get("baselines_meta")
    for name in EVALUATORS:
        baselines = (cfg.get(name) or {}).get("baselines")
        if baselines is None:
            continue
        if meta is None:
            problems.append(f"{name}.baselines without a baselines_meta saying what they are for")
        elif dict(baselines) != dict(cfg.get("single_task_baselines") or {}):
            problems.append(f"{name}.baselines are not the figures baselines_meta describes")
    # Checked even when no evaluator uses them: an inherited reference file is the bug's seed.
    if meta is not None:
        backbone, dataset, tasks = signature(cfg)
        if meta.backbone != backbone:
            problems.append(f"references for backbone {meta.backbone}, model has {backbone}")
        if meta.dataset != dataset:
            problems.append(f"references for dataset {meta.dataset}, config tests on {dataset}")
        if set(meta.tasks) != tasks:
            problems.append(f"references for tasks {sorted(meta.tasks)}, model has {sorted(tasks)}")
    return problems


def references() -> dict[tuple[str, str, frozenset[str]], Path]:
    """Every (backbone, dataset, tasks) that configs/_base_/delta_m/ has figures for."""
    out = {}
    for path in DELTA_M:
        meta = Config.fromfile(str(path)).baselines_meta
        out[(meta.backbone, meta.dataset, frozenset(meta.tasks))] = path
    return out


def test_there_are_references():
    assert DELTA_M


@pytest.mark.parametrize("path", DELTA_M, ids=lambda p: p.name)
def test_reference_file_says_what_it_is_for(path: Path):
    cfg = Config.fromfile(str(path))
    assert set(cfg.baselines_meta) == {"backbone", "dataset", "tasks"}
    assert set(cfg.baselines_meta.tasks) == set(cfg.single_task_baselines)


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_measures_delta_m_against_its_own_references(path: Path):
    cfg = Config.fromfile(str(path))
    if cfg.get("test_evaluator") is None:  # pretraining (MultiMAE): no metric, so no Δm
        assert cfg.get("baselines_meta") is None and cfg.get("val_evaluator") is None
        return
    assert baseline_problems(cfg) == []
    # And the other way: a config whose backbone, dataset and tasks have references uses them.
    if signature(cfg) in references():
        for name in EVALUATORS:
            assert cfg[name].get("baselines"), f"{name} has no Δm though {signature(cfg)} has one"


def test_vit_b16_configs_report_delta_m_and_others_do_not():
    """The configs as of issue 16: Δm for the ViT-B/16 NYUD-v2 and PASCAL-Context configs only."""
    with_delta_m = {
        config_id(p)
        for p in CONFIGS
        if (Config.fromfile(str(p)).get("test_evaluator") or {}).get("baselines")
    }
    assert with_delta_m == {
        f"{model}/{model}_vit-b16_2xb2-40k_{data}.py"
        for model in ("baseline", "invpt", "taskexpert")
        for data in ("nyud-448x576", "pascal-512x512")
    }


BASES = ROOT / "configs/_base_"
WRONG = {
    # The original bug: a ViT-L/16 config inheriting a ViT-B/16 config, baselines and all.
    "inherited": """
_base_ = ["{configs}/baseline/baseline_vit-b16_2xb2-40k_nyud-448x576.py"]
model = dict(backbone=dict(model_name="vit_large_patch16_384", out_indices=[5, 11, 17, 23]))
""",
    # A ViT-L/16 config naming the ViT-B/16 reference file.
    "other_backbone": """
_base_ = [
    "{bases}/models/baseline_vit-l16.py",
    "{bases}/datasets/nyud.py",
    "{bases}/schedules/adam-poly_40k.py",
    "{bases}/default_runtime.py",
    "{bases}/delta_m/single-task_vit-b16_nyud.py",
]
model = dict(tasks=dict(semseg=dict(num_classes=40), depth=dict(), normals=dict(), edge=dict()))
val_evaluator = dict(baselines=_base_.single_task_baselines)
test_evaluator = dict(baselines=_base_.single_task_baselines)
""",
    # NYUD-v2 references on a two-task subset of NYUD-v2.
    "other_tasks": """
_base_ = ["{configs}/baseline/baseline_vit-b16_2xb2-40k_nyud-448x576.py"]
model = dict(tasks=dict(_delete_=True, semseg=dict(num_classes=40), depth=dict()))
""",
    # Figures written into the evaluator, with nothing saying what they were measured on.
    "undeclared": """
_base_ = ["{configs}/baseline/baseline_vit-l16_2xb2-40k_nyud-448x576.py"]
val_evaluator = dict(baselines=dict(semseg=51.15, depth=0.5792, normals=19.77, edge=77.35))
""",
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_check_finds_references_of_another_model(case: str, tmp_path: Path):
    path = tmp_path / f"{case}.py"
    path.write_text(WRONG[case].format(configs=ROOT / "configs", bases=BASES))
    problems = baseline_problems(Config.fromfile(str(path)))
    expected = {
        "inherited": "backbone",
        "other_backbone": "backbone",
        "other_tasks": "tasks",
        "undeclared": "without a baselines_meta",
    }[case]
    assert any(expected in p for p in problems), problems
