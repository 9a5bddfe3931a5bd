"""Prune a trained multitask model's channels, fine-tune it, and report what it cost and gained.

``python tools/prune.py CONFIG CHECKPOINT --ratio R
[--importance magnitude|taylor|task-taylor|greedy] [--global] [--head-ratio H] [--iterative-steps K]
[--finetune-iters N] --out DIR``

``greedy`` follows PAGCP (:mod:`vision_mtl.compress.greedy`): ``--ratio`` is then the largest
ratio any layer may lose, and each layer's ratio is searched in ``--greedy-step`` increments
until a task's loss on ``--val-batches`` validation batches rises past the layer's share of
``--greedy-budget``; ``--greedy-rank`` ranks channels within a layer by ``magnitude`` or
``task-taylor``.

Writes ``DIR/pruned.pth`` (state_dict + pruning record, before fine-tuning),
``DIR/pruned_finetuned.pth`` (after ``--finetune-iters`` iterations of the config's own schedule,
scaled to that length; its Runner work dir is ``DIR/finetune``) and ``DIR/report.json``:
parameters, MACs, ONNX Runtime latency, every task metric and Δm against the unpruned model,
before pruning, after pruning and after fine-tuning. Task output layers and the config's
``pruning.protected`` patterns are never pruned. ``tools/test.py``, ``tools/export.py`` and
``init_model`` rebuild the pruned model from config + checkpoint.

Every setting is checked before the minutes of evaluation and pruning, and a bad one fails
with one sentence naming the flag (or config key) and what was expected, before anything is
written: ratios out of range, ``--layer-ratio`` items that are not ``NAME=R`` or name a missing
or protected layer, counts below their minimum, an ``--out`` that cannot be a writable
directory, config keys a phase needs, a checkpoint that is missing, already pruned or does not
fit the config, and the fine-tuning schedule, built and stepped at ``--finetune-iters`` first.
``report.json`` is written after pruning and again after fine-tuning.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
from pathlib import Path

import torch
from mmengine.config import Config, DictAction

from vision_mtl.apis import init_model, load_config, write_json
from vision_mtl.complexity import count_macs, count_parameters
from vision_mtl.compress.greedy import GREEDY_RANKS, greedy_prune
from vision_mtl.compress.pruning import (
    IMPORTANCES,
    PruningError,
    check_head_pruning,
    check_ratio_dict,
    protected_layers,
    prune,
)
from vision_mtl.compress.workflow import (
    check_finetune,
    evaluate_model,
    finetune,
    finetune_config,
    ort_latency,
    save_pruned_checkpoint,
)
from vision_mtl.evaluation.multitask import compute_delta_m
from vision_mtl.export import export_canvas
from vision_mtl.tasks import get_task
from vision_mtl.utils import resolve_checkpoint

STAGES = ("before", "pruned", "finetuned")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--ratio", type=float, required=True, help="channel ratio removed")
    parser.add_argument("--importance", choices=[*IMPORTANCES, "greedy"], default="magnitude")
    parser.add_argument("--global", dest="global_pruning", action="store_true")
    parser.add_argument(
        "--head-ratio", type=float, default=0.0, help="share of ViT attention heads removed whole"
    )
    parser.add_argument("--iterative-steps", type=int, default=1)
    parser.add_argument("--finetune-iters", type=int, default=0)
    parser.add_argument("--grad-batches", type=int, default=4, help="batches for Taylor scores")
    parser.add_argument(
        "--greedy-budget", type=float, default=0.1, help="relative task loss rise allowed"
    )
    parser.add_argument("--greedy-step", type=float, default=0.1, help="ratio search step")
    parser.add_argument(
        "--greedy-rank", choices=GREEDY_RANKS, default="magnitude", help="ranking within a layer"
    )
    parser.add_argument("--val-batches", type=int, default=4, help="batches for greedy losses")
    parser.add_argument(
        "--layer-ratio", nargs="+", default=[], metavar="NAME=R", help="per-layer ratios"
    )
    parser.add_argument("--round-to", type=int, default=16, help="channel multiple (0: none)")
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def _layer_ratios(items: list[str]) -> dict[str, float]:
    """``--layer-ratio`` items, each ``NAME=R`` with R in (0, 1), as {name: ratio}."""
    ratios: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        expected = "NAME=R: a layer name, '=', then a ratio in (0, 1), e.g. decoder.fuse.conv=0.5"
        try:
            ratio = float(value)
        except ValueError:
            ratio = None
        if not (sep and name and ratio is not None):
            raise SystemExit(f"--layer-ratio item {item!r} is not {expected}")
        if not 0 < ratio < 1:
            raise SystemExit(
                f"--layer-ratio item {item!r}: the ratio must be in (0, 1), got {value}"
            )
        if name in ratios:
            raise SystemExit(f"--layer-ratio names layer {name!r} twice; give each layer one ratio")
        ratios[name] = ratio
    return ratios


def _check_counts(args: argparse.Namespace) -> None:
    """Every count flag at least its minimum (0 iterations of fine-tuning: none)."""
    minimums = {
        "iterative_steps": 1,
        "finetune_iters": 0,
        "grad_batches": 1,
        "val_batches": 1,
        "latency_runs": 1,
        "round_to": 0,
    }
    for key, minimum in minimums.items():
        value = getattr(args, key)
        if value < minimum:
            flag = "--" + key.replace("_", "-")
            meaning = " (0: no fine-tuning)" if key == "finetune_iters" else ""
            meaning = " (0: exact channel counts)" if key == "round_to" else meaning
            raise SystemExit(f"{flag} must be an integer >= {minimum}{meaning}, got {value}")


def _check_out(out: Path) -> None:
    """``out`` is, or can be made, a writable directory (checked before anything is written)."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SystemExit(f"--out {str(out)!r} cannot be a directory: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"--out {str(out)!r} cannot be written: {str(existing)!r} is read-only")


def check_args(args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """Every flag's value and combination, before any file is read; returns the ratios.

    Raises:
        SystemExit: one sentence naming the flag, the value and what was expected.
    """
    if not 0 < args.ratio < 1:
        raise SystemExit(f"--ratio must be in (0, 1), got {args.ratio}")
    if not 0 <= args.head_ratio < 1:
        raise SystemExit(
            f"--head-ratio must be in [0, 1) (0 keeps every head), got {args.head_ratio}"
        )
    _check_counts(args)
    layer_ratios = _layer_ratios(args.layer_ratio)
    if args.importance == "greedy":
        if args.global_pruning or args.iterative_steps > 1 or layer_ratios or args.head_ratio:
            raise SystemExit(
                "--importance greedy chooses every layer's ratio itself; --global, "
                "--iterative-steps, --layer-ratio and --head-ratio do not apply to it"
            )
        if not 0 < args.greedy_budget < math.inf:
            raise SystemExit(
                f"--greedy-budget must be a positive relative loss rise, got {args.greedy_budget}"
            )
        if not 0 < args.greedy_step <= args.ratio:
            raise SystemExit(
                f"--greedy-step must be in (0, --ratio={args.ratio}], got {args.greedy_step}"
            )
    _check_out(Path(args.out))
    return args.ratio, layer_ratios


def check_config(cfg: Config, args: argparse.Namespace) -> tuple[int, int]:
    """The config has what every later phase reads; returns the export canvas (H, W).

    The fine-tuning schedule is built and stepped here (:func:`check_finetune`), so a schedule
    that cannot be scaled to ``--finetune-iters`` stops the run before the pruning.
    """
    needed = ["test_dataloader", "test_evaluator"]
    greedy = args.importance == "greedy"
    if args.importance in ("taylor", "task-taylor") or (greedy and args.greedy_rank != "magnitude"):
        needed.append("train_dataloader")
    if greedy:
        needed.append("val_dataloader")
    missing = [key for key in needed if not cfg.get(key)]
    if missing:
        raise SystemExit(
            f"config {args.config!r} does not set {', '.join(missing)}, which this run reads"
        )
    try:
        canvas = export_canvas(cfg)
        if args.finetune_iters:
            check_finetune(cfg, args.finetune_iters)
    except PruningError as err:
        raise SystemExit(
            f"--finetune-iters {args.finetune_iters} with config {args.config!r}: {err}"
        ) from None
    except ValueError as err:
        raise SystemExit(f"config {args.config!r}: {err}") from None
    return canvas


def load_model(
    cfg: Config, args: argparse.Namespace, layer_ratios: dict[str, float]
) -> tuple[torch.nn.Module, list[str]]:
    """The unpruned model with the checkpoint's weights; the per-layer and head settings fit it."""
    try:
        model = init_model(copy.deepcopy(cfg), args.checkpoint, device="cpu")
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    except (PruningError, RuntimeError, KeyError, ValueError) as err:
        raise SystemExit(
            f"checkpoint {args.checkpoint!r} does not fit config {args.config!r}: {err}"
        ) from None
    if model.cfg.model.get("pruning") is not None:
        raise SystemExit(
            f"checkpoint {args.checkpoint!r} is already pruned (its meta holds a pruning "
            "record); records do not chain, so prune the unpruned checkpoint it came from with "
            "the larger --ratio"
        )
    patterns = list(cfg.get("pruning", {}).get("protected", []))
    try:
        check_ratio_dict(model, layer_ratios, protected_layers(model, patterns))
    except PruningError as err:
        raise SystemExit(f"--layer-ratio: {err}") from None
    try:
        if args.head_ratio:
            check_head_pruning(model)
    except PruningError as err:
        raise SystemExit(f"--head-ratio {args.head_ratio}: {err}") from None
    return model, patterns


def _state(model, cfg, canvas, runs: int) -> dict:
    example = torch.zeros(1, 3, *canvas)
    return dict(
        parameters=count_parameters(model)["total"],
        macs=count_macs(model, example, mode="tensor")["total"],
        ort_latency_ms=ort_latency(model, canvas, runs),
        metrics=evaluate_model(model, cfg),
    )


def _batches(loader_cfg, count: int) -> list[dict]:
    """The first ``count`` batches of a config's data loader."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from vision_mtl.registry import SCOPE

    with DefaultScope.overwrite_default_scope(SCOPE):
        loader = Runner.build_dataloader(copy.deepcopy(loader_cfg))
    batches = []
    for batch in loader:
        if len(batches) >= count:
            break
        batches.append(batch)
    return batches


def _write_report(report: dict, tasks: list[str], out: Path) -> None:
    """Add Δm, speed-up and MACs ratio to every stage so far; write ``out/report.json``."""
    primary = {t: f"{t}/{get_task(t).primary_metric}" for t in tasks}
    reference = {t: report["before"]["metrics"][primary[t]] for t in tasks}
    for stage in STAGES:
        if stage in report:
            state = report[stage]
            state["delta_m"] = compute_delta_m(state["metrics"], reference)["multitask/delta_m"]
            state["speedup"] = report["before"]["ort_latency_ms"] / state["ort_latency_ms"]
            state["macs_ratio"] = state["macs"] / report["before"]["macs"]
    write_json(json.loads(json.dumps(report, default=float)), out / "report.json")


def _print_table(report: dict, tasks: list[str]) -> None:
    header = ["stage", "params (M)", "MACs (G)", "ORT ms", "speedup"]
    header += [f"{t} {get_task(t).primary_metric}" for t in tasks] + ["Δm"]
    print("| " + " | ".join(header) + " |")
    for stage in (stage for stage in STAGES if stage in report):
        s = report[stage]
        cells = [stage, f"{s['parameters'] / 1e6:.2f}", f"{s['macs'] / 1e9:.3f}"]
        cells += [f"{s['ort_latency_ms']:.2f}", f"{s['speedup']:.2f}x"]
        cells += [f"{s['metrics'][f'{t}/{get_task(t).primary_metric}']:.4g}" for t in tasks]
        cells.append(f"{s['delta_m']:+.2f}")
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # Everything a later phase needs is checked first: pruning and evaluation take minutes.
    ratio, layer_ratios = check_args(args)
    try:
        cfg = load_config(args.config, args.cfg_options)
        resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    canvas = check_config(cfg, args)
    model, patterns = load_model(cfg, args, layer_ratios)
    out = Path(args.out)
    report = dict(config=args.config, checkpoint=args.checkpoint, ratio=ratio)
    report["before"] = _state(model, cfg, canvas, args.latency_runs)
    example = torch.zeros(1, 3, *canvas)
    greedy = args.importance == "greedy"
    ranked = greedy and args.greedy_rank == "task-taylor"
    needs_gradients = ranked or args.importance in ("taylor", "task-taylor")
    grad_batches = _batches(cfg.train_dataloader, args.grad_batches) if needs_gradients else []
    try:
        if greedy:
            record = greedy_prune(
                model,
                example,
                ratio,
                _batches(cfg.val_dataloader, args.val_batches),
                budget=args.greedy_budget,
                step=args.greedy_step,
                protected=patterns,
                round_to=args.round_to or None,
                rank=args.greedy_rank,
                grad_batches=grad_batches,
                log=print,
            )
        else:
            record = prune(
                model,
                example,
                ratio,
                importance=args.importance,
                global_pruning=args.global_pruning,
                iterative_steps=args.iterative_steps,
                protected=patterns,
                batches=grad_batches,
                layer_ratios=layer_ratios,
                round_to=args.round_to or None,
                head_ratio=args.head_ratio,
            )
    except PruningError as err:  # the model cannot be traced or no longer runs: nothing written
        raise SystemExit(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    dataset_meta = model.dataset_meta
    pruned_path = save_pruned_checkpoint(model, record, out / "pruned.pth", dataset_meta)
    report["pruned"] = _state(model, cfg, canvas, args.latency_runs)
    report["record"] = {k: v for k, v in record.items() if k != "history"}
    _write_report(report, list(model.tasks), out)  # kept even if fine-tuning fails
    if args.finetune_iters:
        tuned_cfg = finetune_config(cfg, record, pruned_path, args.finetune_iters, out / "finetune")
        model = finetune(tuned_cfg)
        save_pruned_checkpoint(model, record, out / "pruned_finetuned.pth", dataset_meta)
        report["finetuned"] = _state(model, cfg, canvas, args.latency_runs)
        _write_report(report, list(model.tasks), out)
    _print_table(report, list(model.tasks))
    return report


if __name__ == "__main__":
    main()
