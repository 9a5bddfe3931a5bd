"""Per-step training time of every weighting strategy, against fixed weights, in one run.

Each strategy trains its own copy of the config's model (same seed) with the config's optimizer
wrapper on the same batches, read once into memory before timing. The steps are interleaved —
one step of every strategy per round, the order rotating — so a change in machine load touches
all of them alike, and each strategy's median step time is reported with its ratio to ``Fixed``.
With each strategy: its backward passes per step and the floats it holds beyond fixed
weighting's (the task gradients ``J``: tasks × backbone parameters, or tasks × the backbone
output's size for ``target='representation'``).
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Mapping, Sequence

import torch
from mmengine.logging import MessageHub

#: the strategies (and settings) the README compares, in its order
DEFAULT_WEIGHTINGS: tuple[dict, ...] = (
    dict(type="Fixed"),
    dict(type="Uncertainty"),
    dict(type="DWA"),
    dict(type="RLW"),
    dict(type="LogSum"),
    dict(type="FAMO"),
    dict(type="DBMTL"),
    dict(type="PCGrad"),
    dict(type="PCGrad", target="representation"),
    dict(type="CAGrad"),
    dict(type="IMTLG"),
    dict(type="NashMTL"),
    dict(type="AlignedMTL"),
    dict(type="MGDA"),
    dict(type="UPGrad"),
    dict(type="GradNorm"),
)


def weighting_name(weighting: Mapping) -> str:
    """``PCGrad`` or ``PCGrad(representation)``: the row name of a weighting config."""
    target = weighting.get("target", "parameters")
    suffix = "" if target == "parameters" else f"({target})"
    return f"{weighting['type']}{suffix}"


def cost_of(model: torch.nn.Module, batch_inputs: torch.Tensor) -> dict:
    """Backward passes per step and extra floats held by ``model``'s weighting."""
    weighting = model.weighting
    tasks = len(model.tasks)
    if not weighting.uses_gradients:
        forward = 2 if weighting.needs_losses_after_update else 1
        return dict(forward_passes=forward, backward_passes=1, extra_floats=0)
    if weighting.target == "parameters":
        shared = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
        held = tasks * shared * weighting.gradient_copies
        return dict(forward_passes=1, backward_passes=tasks + 1, extra_floats=held)
    with torch.no_grad():
        features = model.backbone(batch_inputs)
    size = sum(f.numel() for f in features)
    return dict(forward_passes=1, backward_passes=tasks + 1, extra_floats=tasks * size)


def benchmark_weightings(
    cfg,
    weightings: Sequence[Mapping] = DEFAULT_WEIGHTINGS,
    steps: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> dict:
    """Time ``steps`` interleaved training steps of every weighting (after ``warmup`` each).

    Args:
        cfg: a loaded config (its model, train dataloader and optimizer wrapper are used).
        weightings: weighting configs; the first must be ``Fixed`` (the reference).
        steps: timed steps per weighting.
        warmup: untimed steps per weighting first.
        seed: seed of every model's initialization.

    Returns:
        ``rows``: per weighting its name, median and all step times (ms), ratio to Fixed,
        forward and backward passes per step and extra floats; plus the run's settings.
    """
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from vision_mtl.engine import register_all_modules
    from vision_mtl.models.builder import build_model
    from vision_mtl.registry import SCOPE

    if not weightings or weightings[0].get("type") != "Fixed":
        raise ValueError("the first weighting must be dict(type='Fixed'), the reference")
    register_all_modules()
    with DefaultScope.overwrite_default_scope(SCOPE):
        loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=seed)
        batches = list(itertools.islice(iter(loader), warmup + steps))
        runs = []
        for weighting in weightings:
            torch.manual_seed(seed)
            model = build_model(dict(copy.deepcopy(cfg.model), weighting=dict(weighting))).train()
            optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
            inputs = model.data_preprocessor(batches[0], True)["inputs"]
            runs.append(dict(name=weighting_name(weighting), model=model, optim=optim, times=[]))
            runs[-1].update(cost_of(model, inputs))
    hub = MessageHub.get_current_instance()
    for index, batch in enumerate(batches):
        hub.update_info("iter", index)
        order = runs[index % len(runs) :] + runs[: index % len(runs)]
        for run in order:
            start = time.perf_counter()
            run["model"].train_step(batch, run["optim"])
            if index >= warmup:
                run["times"].append(1000 * (time.perf_counter() - start))
    reference = statistics.median(runs[0]["times"])
    rows = []
    for run in runs:
        median = statistics.median(run["times"])
        rows.append(
            dict(
                weighting=run["name"],
                median_ms=round(median, 1),
                relative_to_fixed=round(median / reference, 2),
                forward_passes=run["forward_passes"],
                backward_passes=run["backward_passes"],
                extra_floats=run["extra_floats"],
                extra_mb=round(run["extra_floats"] * 4 / 2**20, 1),
                step_ms=[round(t, 1) for t in run["times"]],
            )
        )
    return dict(
        steps=steps,
        warmup=warmup,
        batch_size=len(batches[0]["inputs"]),
        threads=torch.get_num_threads(),
        rows=rows,
    )


def format_rows(report: Mapping) -> list[str]:
    """A Markdown table of :func:`benchmark_weightings`' rows."""
    lines = [
        "| weighting | ms/step | × fixed | fwd + bwd passes | extra memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        passes = f"{row['forward_passes']} + {row['backward_passes']}"
        lines.append(
            f"| {row['weighting']} | {row['median_ms']} | {row['relative_to_fixed']:.2f} | "
            f"{passes} | {row['extra_mb']} |"
        )
    return lines
