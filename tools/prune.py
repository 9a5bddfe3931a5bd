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

Bad settings (a ratio outside (0, 1), a protected layer in ``--layer-ratio``, a checkpoint that
does not fit the config) fail before anything is written.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from mmengine.config import DictAction

from vision_mtl.apis import init_model, load_config, write_json
from vision_mtl.complexity import count_macs, count_parameters
from vision_mtl.compress.greedy import GREEDY_RANKS, greedy_prune
from vision_mtl.compress.pruning import (
    IMPORTANCES,
    PruningError,
    check_ratio,
    check_ratio_dict,
    protected_layers,
    prune,
)
from vision_mtl.compress.workflow import (
    evaluate_model,
    finetune,
    finetune_config,
    ort_latency,
    save_pruned_checkpoint,
)
from vision_mtl.evaluation.multitask import compute_delta_m
from vision_mtl.export import export_canvas
from vision_mtl.tasks import get_task


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
    ratios = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            ratios[name] = float(value) if sep else float("nan")
        except ValueError:
            raise PruningError(f"--layer-ratio {item!r} is not NAME=RATIO") from None
    return ratios


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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        ratio = check_ratio(args.ratio)
        layer_ratios = _layer_ratios(args.layer_ratio)
    except PruningError as err:
        raise SystemExit(str(err)) from None
    if args.iterative_steps < 1 or args.finetune_iters < 0:
        raise SystemExit("--iterative-steps must be positive and --finetune-iters non-negative")
    greedy = args.importance == "greedy"
    if greedy and (
        args.global_pruning or args.iterative_steps > 1 or layer_ratios or args.head_ratio
    ):
        raise SystemExit(
            "--importance greedy chooses every layer's ratio itself; --global, "
            "--iterative-steps, --layer-ratio and --head-ratio do not apply to it"
        )
    if args.head_ratio and not 0 < args.head_ratio < 1:
        raise SystemExit(f"--head-ratio must be in (0, 1), got {args.head_ratio}")
    if greedy and not (args.greedy_budget > 0 and 0 < args.greedy_step <= ratio):
        raise SystemExit(
            f"--greedy-budget must be positive and --greedy-step in (0, --ratio={ratio}]; "
            f"got {args.greedy_budget} and {args.greedy_step}"
        )
    cfg = load_config(args.config, args.cfg_options)
    patterns = list(cfg.get("pruning", {}).get("protected", []))
    try:
        model = init_model(copy.deepcopy(cfg), args.checkpoint, device="cpu")
    except (RuntimeError, KeyError) as err:
        raise SystemExit(
            f"checkpoint {args.checkpoint!r} does not fit config {args.config!r}: {err}"
        ) from None
    try:
        check_ratio_dict(model, layer_ratios, protected_layers(model, patterns))
    except PruningError as err:
        raise SystemExit(str(err)) from None
    out = Path(args.out)
    canvas = export_canvas(cfg)
    report = dict(config=args.config, checkpoint=args.checkpoint, ratio=ratio)
    report["before"] = _state(model, cfg, canvas, args.latency_runs)
    example = torch.zeros(1, 3, *canvas)
    ranked = greedy and args.greedy_rank == "task-taylor"
    needs_gradients = ranked or args.importance in ("taylor", "task-taylor")
    grad_batches = _batches(cfg.train_dataloader, args.grad_batches) if needs_gradients else []
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
    out.mkdir(parents=True, exist_ok=True)
    dataset_meta = model.dataset_meta
    pruned_path = save_pruned_checkpoint(model, record, out / "pruned.pth", dataset_meta)
    report["pruned"] = _state(model, cfg, canvas, args.latency_runs)
    stages = ["before", "pruned"]
    if args.finetune_iters:
        tuned_cfg = finetune_config(cfg, record, pruned_path, args.finetune_iters, out / "finetune")
        model = finetune(tuned_cfg)
        save_pruned_checkpoint(model, record, out / "pruned_finetuned.pth", dataset_meta)
        report["finetuned"] = _state(model, cfg, canvas, args.latency_runs)
        stages.append("finetuned")
    tasks = list(model.tasks)
    reference = {t: report["before"]["metrics"][f"{t}/{get_task(t).primary_metric}"] for t in tasks}
    for stage in stages:
        state = report[stage]
        state["delta_m"] = compute_delta_m(state["metrics"], reference)["multitask/delta_m"]
        state["speedup"] = report["before"]["ort_latency_ms"] / state["ort_latency_ms"]
        state["macs_ratio"] = state["macs"] / report["before"]["macs"]
    report["record"] = {k: v for k, v in record.items() if k != "history"}
    header = ["stage", "params (M)", "MACs (G)", "ORT ms", "speedup"]
    header += [f"{t} {get_task(t).primary_metric}" for t in tasks] + ["Δm"]
    print("| " + " | ".join(header) + " |")
    for stage in stages:
        s = report[stage]
        cells = [stage, f"{s['parameters'] / 1e6:.2f}", f"{s['macs'] / 1e9:.3f}"]
        cells += [f"{s['ort_latency_ms']:.2f}", f"{s['speedup']:.2f}x"]
        cells += [f"{s['metrics'][f'{t}/{get_task(t).primary_metric}']:.4g}" for t in tasks]
        cells.append(f"{s['delta_m']:+.2f}")
        print("| " + " | ".join(cells) + " |")
    write_json(json.loads(json.dumps(report, default=float)), out / "report.json")
    return report


if __name__ == "__main__":
    main()
