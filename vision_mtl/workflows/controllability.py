"""Controllability of a slimmable model, measured as Aich et al. (ICCV 2023) measure it.

At one MAC budget, ``num_prefs`` task-preference vectors are drawn (Dirichlet(1): uniform over
the simplex), the width search runs for each (:func:`~.width_search.run_search`) and every
task's primary metric at the chosen configuration is turned into a higher-is-better score
relative to the widest configuration (:func:`~vision_mtl.evaluation.pareto.normalized_scores`,
1 = the widest). Two figures summarize how well preferences steer the model:

* **controllability**: per task, the Spearman rank correlation between the task's preference
  and its score over the draws; their mean is the paper's figure;
* **hypervolume** of the scores reached, with the narrowest configuration's scores as the
  reference point (the region every point must improve on).

Uniform width scaling (every slot one width, the widest that fits the budget) ignores
preferences: it reaches one point for every draw, so its correlations are undefined (reported
as ``nan``) and its hypervolume is that one point's.
"""

from __future__ import annotations

import math

import numpy as np

from vision_mtl.evaluation.pareto import (
    hypervolume,
    normalized_scores,
    pareto_front,
    preference_correlation,
)
from vision_mtl.models.slimmable.model import narrowest_configuration, slot_widths
from vision_mtl.models.slimmable.search import macs_function, uniform_search
from vision_mtl.workflows.width_search import ConfigurationEvaluator, example_input, run_search


def sample_preferences(tasks: list[str], num: int, seed: int = 0) -> list[dict[str, float]]:
    """``num`` preference vectors drawn uniformly from the simplex (Dirichlet(1)), seeded."""
    if num < 2:
        raise ValueError(f"controllability needs at least 2 preference vectors, got {num}")
    draws = np.random.default_rng(seed).dirichlet(np.ones(len(tasks)), size=num)
    return [{t: float(p) for t, p in zip(tasks, row)} for row in draws]


def measure_controllability(
    evaluator: ConfigurationEvaluator,
    canvas: tuple[int, int],
    budget: float,
    num_prefs: int = 20,
    seed: int = 0,
    log=print,
) -> dict:
    """Search for ``num_prefs`` preference vectors at ``budget``; correlations and hypervolume.

    Returns:
        Plain data: ``budget``, ``tasks``, ``runs`` (preferences, chosen configuration, MACs,
        Δm, metrics and scores per draw), ``controllability`` (per task and mean, for the
        search and for uniform scaling), ``hypervolume`` (both), ``reference`` (the narrowest
        configuration's scores and metrics) and ``uniform`` (its search result).
    """
    model, tasks = evaluator.model, list(evaluator.tasks)
    table = macs_function(model, example_input(model, canvas))
    prefs = sample_preferences(tasks, num_prefs, seed)
    runs = []
    for i, pref in enumerate(prefs):
        result = run_search(evaluator, canvas, budget, pref, table=table)["search"]
        runs.append(
            dict(
                preferences=pref,
                configuration=result["configuration"],
                macs=result["macs"],
                delta_m=result["delta_m"],
                metrics=result["metrics"],
            )
        )
        log(f"[{i + 1}/{num_prefs}] {_fmt(pref)} -> {result['configuration']} "
            f"{result['macs'] / 1e6:.1f}M MACs, Δm {result['delta_m']:+.2f}")  # fmt: skip
    uniform = uniform_search(slot_widths(model), table, evaluator, budget).to_dict()
    narrow = evaluator.metrics(narrowest_configuration(model))

    scores = normalized_scores([r["metrics"] for r in runs], tasks, evaluator.reference)
    uniform_scores = normalized_scores([uniform["metrics"]] * num_prefs, tasks, evaluator.reference)
    floor = normalized_scores([narrow], tasks, evaluator.reference)[0]
    matrix = np.array([[p[t] for t in tasks] for p in prefs])
    per_task, mean = preference_correlation(matrix, scores)
    uniform_per_task, uniform_mean = preference_correlation(matrix, uniform_scores)
    for run, row in zip(runs, scores):
        run["scores"] = dict(zip(tasks, row.tolist()))
    front = pareto_front(scores)
    return dict(
        budget=float(budget),
        canvas=list(canvas),
        tasks=tasks,
        num_prefs=num_prefs,
        seed=seed,
        num_val=evaluator.num_val,
        runs=runs,
        pareto_runs=front,
        controllability=dict(
            search=dict(per_task=dict(zip(tasks, per_task)), mean=mean),
            uniform=dict(per_task=dict(zip(tasks, uniform_per_task)), mean=uniform_mean),
        ),
        hypervolume=dict(
            search=hypervolume(scores, floor),
            uniform=hypervolume(uniform_scores[:1], floor),
        ),
        reference=dict(
            configuration=narrowest_configuration(model),
            scores=dict(zip(tasks, floor.tolist())),
            metrics=narrow,
        ),
        uniform=uniform,
        evaluated_configurations=len(evaluator.cache),
    )


def _fmt(pref: dict[str, float]) -> str:
    return "{" + ", ".join(f"{t}: {p:.2f}" for t, p in pref.items()) + "}"


def format_controllability(report: dict) -> list[str]:
    """The summary lines printed by the controllability tool."""

    def show(value: float) -> str:
        return "undefined (constant)" if math.isnan(value) else f"{value:+.3f}"

    search, uniform = report["controllability"]["search"], report["controllability"]["uniform"]
    lines = [
        f"budget {report['budget'] / 1e6:.1f}M MACs, {report['num_prefs']} preference vectors "
        f"(seed {report['seed']}), {report['num_val']} validation samples, "
        f"{report['evaluated_configurations']} configurations evaluated",
        f"{'task':<10} {'search ρ':>22} {'uniform ρ':>22}",
    ]
    for task in report["tasks"]:
        lines.append(f"{task:<10} {show(search['per_task'][task]):>22} "
                     f"{show(uniform['per_task'][task]):>22}")  # fmt: skip
    lines.append(f"{'mean':<10} {show(search['mean']):>22} {show(uniform['mean']):>22}")
    hv = report["hypervolume"]
    lines.append(f"hypervolume (reference: narrowest configuration): search {hv['search']:.4g}, "
                 f"uniform {hv['uniform']:.4g}")  # fmt: skip
    return lines
