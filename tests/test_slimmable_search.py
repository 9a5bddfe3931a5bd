"""Budget- and preference-driven width search: MAC table, preference rule, search, baseline."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import tiny_input as _input
from conftest import tiny_slimmable as _slim

from vision_mtl.complexity import count_macs
from vision_mtl.models.slimmable.model import (
    configuration,
    full_configuration,
    get_configuration,
    narrowest_configuration,
    slot_widths,
)
from vision_mtl.models.slimmable.search import (
    MacTable,
    mac_table,
    preference_configurations,
    search,
    task_widths,
    uniform_configuration,
    uniform_search,
)

TASK_NAMES = ("semseg", "depth", "normals")


@pytest.fixture(scope="module")
def tables() -> dict[str, tuple]:
    """(model, one-image input, MAC table) per tiny backbone kind, measured once."""
    torch.set_num_threads(1)
    out = {}
    for kind in ("vit", "cnn"):
        model = _slim(kind).eval()
        x = _input(kind)[:1]
        out[kind] = (model, x, mac_table(model, x))
    return out


def _fake_evaluate(config: dict[str, float]) -> tuple[float, dict[str, float]]:
    """A cheap stand-in for a validation run: wider is better (tests the search logic only)."""
    metrics = {f"{task}/width": config[task] for task in TASK_NAMES}
    return sum(config.values()) + 0.1 * config["encoder"], metrics


def _random_prefs(rng: random.Random) -> dict[str, float]:
    return {t: rng.choice([0.0, 0.1, 0.3, 0.5, 0.5, 1.0, rng.random()]) for t in TASK_NAMES}


# ----------------------------------------------------------------------------- MAC table


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_mac_table_equals_counting_the_whole_model(tables, kind):
    model, x, table = tables[kind]
    offered = slot_widths(model)
    rng = random.Random(kind)
    configs = [full_configuration(model), narrowest_configuration(model)]
    configs += [{s: rng.choice(w) for s, w in offered.items()} for _ in range(8)]
    for config in configs:
        with configuration(model, config):
            counted = count_macs(model, x, mode="tensor")
        parts = table.parts(config)
        assert table.macs(config) == counted["total"], config
        assert parts["backbone"] == counted["backbone"]
        assert parts["decoder"] == counted["decoder"]
        assert sum(parts[f"heads.{t}"] for t in TASK_NAMES) == counted["heads"]
    assert get_configuration(model) == full_configuration(model)  # restored after measuring


def test_mac_table_restores_modes_and_refuses_incomplete_configurations():
    model = _slim("vit").train()
    model.backbone.eval()
    table = mac_table(model, _input("vit")[:1])
    assert model.training and not model.backbone.training and model.decoder.training
    assert isinstance(table, MacTable) and table(full_configuration(model)) > 0
    config = full_configuration(model)
    del config["depth"]
    with pytest.raises(ValueError, match=r"missing \['depth'\]"):
        table.macs(config)
    with pytest.raises(ValueError, match="width 0.3 is not offered for slot 'decoder'"):
        table.macs({**full_configuration(model), "decoder": 0.3})


def test_mac_table_refuses_parts_that_depend_on_other_slots(monkeypatch):
    """A decoder whose MACs also follow the task widths (TaskExpert's per-task layers) is refused."""
    import vision_mtl.models.slimmable.search as search_module

    model = _slim("vit")

    def fake_count(model, x, components, **kwargs):
        config = get_configuration(model)
        counts = {name: 1 for name in components}
        counts["decoder"] = int(100 * config["decoder"] + 10 * config["semseg"])
        counts["other"] = 0
        return counts

    monkeypatch.setattr(search_module, "count_macs", fake_count)
    with pytest.raises(RuntimeError, match="decoder MACs at .* not sums of parts"):
        mac_table(model, _input("vit")[:1])
    assert get_configuration(model) == full_configuration(model)


# ----------------------------------------------------------------------------- preference rule


def test_task_widths_follow_the_preferences():
    offered = {"encoder": (0.25, 0.5, 0.75, 1.0), "decoder": (0.25, 0.5, 0.75, 1.0)}
    offered.update({t: (0.25, 0.5, 0.75, 1.0) for t in TASK_NAMES})
    levels = task_widths(offered, {"semseg": 1.0, "depth": 0.5, "normals": 0.1})
    assert levels == [
        {"semseg": 0.25, "depth": 0.25, "normals": 0.25},
        {"semseg": 0.5, "depth": 0.25, "normals": 0.25},  # 0.5 * 0.5 = 0.25
        {"semseg": 0.75, "depth": 0.5, "normals": 0.25},  # 0.375 is halfway: the wider
        {"semseg": 1.0, "depth": 0.5, "normals": 0.25},
    ]
    equal = task_widths(offered, {"semseg": 2.0, "depth": 2.0, "normals": 2.0})
    assert equal == [{t: w for t in TASK_NAMES} for w in (0.25, 0.5, 0.75, 1.0)]
    candidates = preference_configurations(offered, {"semseg": 1.0, "depth": 0.5, "normals": 0})
    assert len(candidates) == 4 * 4 * 4
    assert {c["encoder"] for c in candidates} == set(offered["encoder"])


def test_task_widths_are_monotone_in_the_preferences():
    offered = {s: (0.25, 0.5, 0.75, 1.0) for s in ("encoder", "decoder", *TASK_NAMES)}
    rng = random.Random(0)
    for _ in range(300):
        prefs = _random_prefs(rng)
        if max(prefs.values()) == 0:
            continue
        for config in preference_configurations(offered, prefs):
            for a in TASK_NAMES:
                for b in TASK_NAMES:
                    if prefs[a] > prefs[b]:
                        assert config[a] >= config[b], (prefs, config)
                    if prefs[a] == prefs[b]:
                        assert config[a] == config[b], (prefs, config)


def test_preferences_must_name_every_task_and_only_tasks():
    offered = {s: (0.5, 1.0) for s in ("encoder", "decoder", *TASK_NAMES)}
    with pytest.raises(ValueError, match=r"miss task\(s\) \['normals'\]"):
        preference_configurations(offered, {"semseg": 1.0, "depth": 1.0})
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['edge'\]"):
        preference_configurations(offered, {"semseg": 1, "depth": 1, "normals": 1, "edge": 1})
    with pytest.raises(ValueError, match="preference of task 'depth' must be a finite number"):
        preference_configurations(offered, {"semseg": 1.0, "depth": -1.0, "normals": 1.0})
    with pytest.raises(ValueError, match="at least one preference must be positive"):
        preference_configurations(offered, {"semseg": 0, "depth": 0, "normals": 0})
    uneven = {**offered, "depth": (0.25, 1.0)}
    with pytest.raises(ValueError, match=r"task slots \['depth'\] offer other widths"):
        preference_configurations(uneven, {"semseg": 1, "depth": 1, "normals": 1})


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_search_never_exceeds_the_budget(tables, kind):
    model, _, table = tables[kind]
    offered = slot_widths(model)
    smallest = table.macs(narrowest_configuration(model))
    largest = table.macs(full_configuration(model))
    rng = random.Random(1)
    for _ in range(60):
        prefs = _random_prefs(rng)
        if max(prefs.values()) == 0:
            continue
        budget = rng.uniform(smallest, largest * 1.1)
        candidates = preference_configurations(offered, prefs)
        result = search(candidates, table, _fake_evaluate, budget)
        assert result.macs <= budget and table.macs(result.configuration) == result.macs
        assert result.configuration in candidates
        assert all(row["macs"] <= budget for row in result.table)
        # per encoder width, only the largest MACs within the budget are evaluated
        for e in offered["encoder"]:
            fitting = [table.macs(c) for c in candidates if c["encoder"] == e]
            fitting = [m for m in fitting if m <= budget]
            evaluated = {r["macs"] for r in result.table if r["configuration"]["encoder"] == e}
            assert evaluated == ({max(fitting)} if fitting else set())
        assert sum(row["chosen"] for row in result.table) == 1
        exhaustive = search(candidates, table, _fake_evaluate, budget, keep_per_encoder=None)
        assert exhaustive.macs <= budget
        assert exhaustive.delta_m >= result.delta_m  # it sees a superset of candidates


def test_search_keeps_the_largest_fitting_candidate_per_encoder_width():
    offered = {s: (0.5, 1.0) for s in ("encoder", "decoder", "semseg", "depth")}
    candidates = preference_configurations(offered, {"semseg": 1.0, "depth": 0.2})
    macs = lambda c: 100 * c["encoder"] + 10 * c["decoder"] + c["semseg"] + c["depth"]  # noqa: E731
    seen = []

    def evaluate(config):
        seen.append(config)
        return (2.0 if config["encoder"] == 0.5 else 1.0), {"x": 1.0}

    # head assignments: (0.5, 0.5) and (1.0, 0.5) (depth's 0.1 and 0.2 round up to 0.5)
    assert task_widths(offered, {"semseg": 1.0, "depth": 0.2}) == [
        {"semseg": 0.5, "depth": 0.5},
        {"semseg": 1.0, "depth": 0.5},
    ]
    result = search(candidates, macs, evaluate, budget=108)
    # encoder 1.0 fits only with decoder 0.5 (106 and 106.5 MACs); encoder 0.5 fits everything
    assert seen == [
        {"encoder": 0.5, "decoder": 1.0, "semseg": 1.0, "depth": 0.5},
        {"encoder": 1.0, "decoder": 0.5, "semseg": 1.0, "depth": 0.5},
    ]
    assert result.configuration == seen[0] and result.delta_m == 2.0
    assert result.num_candidates == 8 and result.num_within_budget == 6
    assert [row["pareto"] for row in result.table] == [True, False]
    assert result.to_dict()["table"][0]["chosen"] is True


def test_search_ties_go_to_fewer_macs_and_nan_never_wins():
    candidates = [{"encoder": w, "decoder": w} for w in (0.25, 0.5, 1.0)]
    macs = lambda c: c["encoder"]  # noqa: E731
    result = search(candidates, macs, lambda c: (1.0, {}), budget=1.0, keep_per_encoder=None)
    assert result.configuration["encoder"] == 0.25
    values = {0.25: 0.0, 0.5: float("nan"), 1.0: -1.0}
    result = search(candidates, macs, lambda c: (values[c["encoder"]], {}), budget=1.0)
    assert result.configuration["encoder"] == 0.25
    with pytest.raises(ValueError, match="no finite Δm"):
        search(candidates, macs, lambda c: (float("nan"), {}), budget=1.0)
    with pytest.raises(TypeError, match=r"must return \(delta_m, metrics\)"):
        search(candidates, macs, lambda c: 1.0, budget=1.0)


def test_impossible_budget_names_the_budget_and_the_smallest_macs(tables):
    model, _, table = tables["vit"]
    offered = slot_widths(model)
    smallest = table.macs(narrowest_configuration(model))
    candidates = preference_configurations(offered, {"semseg": 1, "depth": 1, "normals": 1})
    with pytest.raises(ValueError, match=f"budget of 1,000 MACs.*needs {smallest:,} MACs"):
        search(candidates, table, _fake_evaluate, budget=1000)
    with pytest.raises(ValueError, match=f"budget of 1,000 MACs.*needs {smallest:,} MACs"):
        uniform_search(offered, table, _fake_evaluate, budget=1000)
    with pytest.raises(ValueError, match="no candidate"):
        search([], table, _fake_evaluate, budget=1e12)


# ----------------------------------------------------------------------------- uniform baseline


def test_uniform_search_takes_the_widest_single_width_within_the_budget(tables):
    model, _, table = tables["cnn"]
    offered = slot_widths(model)
    assert uniform_configuration(offered, 0.5) == {s: 0.5 for s in offered}
    with pytest.raises(ValueError, match="width 0.3 is not offered for slot 'encoder'"):
        uniform_configuration(offered, 0.3)
    half = table.macs(uniform_configuration(offered, 0.5))
    three_quarters = table.macs(uniform_configuration(offered, 0.75))
    result = uniform_search(offered, table, _fake_evaluate, budget=(half + three_quarters) / 2)
    assert result.configuration == uniform_configuration(offered, 0.5)
    assert result.macs == half and len(result.table) == 1
    full = uniform_search(offered, table, _fake_evaluate, budget=float("inf"))
    assert full.configuration == full_configuration(model)
