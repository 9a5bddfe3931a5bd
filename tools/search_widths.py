"""Choose the width configuration of a trained slimmable model for a compute budget and task
preferences, without retraining (Aich et al., ICCV 2023).

``python tools/search_widths.py CONFIG CHECKPOINT --budget-macs X [--prefs semseg=2,depth=1]
[--uniform] [--exhaustive] [--num-val N] [--calib-batches B] [--shape H W] [--out JSON]
[--save-static PTH]``

Preferred tasks get the wider heads; then, for each encoder width, the decoder and heads take
what the budget leaves, each candidate is measured on the first ``--num-val`` validation samples
(batch norms recalibrated for it on ``--calib-batches`` training batches) and the best Δm against
the widest configuration wins. Tasks left out of ``--prefs`` have preference 1. ``--budget-macs``
takes 3.2e8, 320M or 0.32G (MACs at the config's input size or ``--shape``) and is never
exceeded. Prints the chosen configuration, its MACs and metrics and the table of evaluated
candidates (``*`` Pareto-optimal in Δm and MACs); ``--uniform`` adds uniform width scaling at
the same budget; ``--out`` writes everything as JSON; ``--save-static`` writes the chosen
configuration as a plain static checkpoint which ``tools/test.py``, ``tools/export.py`` and
``init_model`` load with the same CONFIG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmengine.config import DictAction

from vision_mtl.evaluation.multitask import primary_key
from vision_mtl.input_size import add_shape_argument, config_input_size, positive_int
from vision_mtl.utils import write_json
from vision_mtl.workflows.width_search import (
    ConfigurationEvaluator,
    load_slimmable,
    parse_macs,
    parse_preferences,
    primary_value,
    run_search,
    save_static,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--budget-macs", required=True, help="e.g. 3.2e8, 320M, 0.32G")
    parser.add_argument("--prefs", help="task preferences, e.g. semseg=2,depth=1 (others: 1)")
    parser.add_argument("--uniform", action="store_true", help="also report uniform scaling")
    parser.add_argument("--exhaustive", action="store_true", help="evaluate every candidate")
    parser.add_argument("--num-val", type=positive_int, default=64, help="validation samples")
    parser.add_argument("--calib-batches", type=positive_int, default=8, help="BN calibration")
    add_shape_argument(parser, "input size the MACs are counted at")
    parser.add_argument("--out", help="JSON report")
    parser.add_argument("--save-static", help="checkpoint of the chosen configuration")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def _row(row: dict, tasks: list[str]) -> str:
    widths = " ".join(f"{v:<6g}" for v in row["configuration"].values())
    metrics = " ".join(f"{primary_value(row['metrics'], t):8.3f}" for t in tasks)
    mark = ">" if row.get("chosen") else ("*" if row.get("pareto") else " ")
    return f"{mark} {widths} {row['macs'] / 1e6:9.1f}M {row['delta_m']:+7.2f}  {metrics}"


def format_report(report: dict, tasks: list[str]) -> list[str]:
    """The chosen configuration and the table of evaluated candidates, as printed lines."""
    slots = list(report["full"]["configuration"])
    names = [primary_key(t).replace("/", ":")[:8] for t in tasks]
    lines = [
        f"budget {report['budget'] / 1e6:.1f}M MACs (full: {report['full']['macs'] / 1e6:.1f}M),"
        f" preferences {report['preferences']}, {report['num_val']} validation samples",
        "  " + " ".join(f"{s[:6]:<6}" for s in slots) + f" {'MACs':>10} {'Δm':>7}  "
        + " ".join(f"{n:>8}" for n in names),
    ]  # fmt: skip
    lines += [_row(row, tasks) for row in report["search"]["table"]]
    chosen = report["search"]
    lines.append(f"chosen: {chosen['configuration']} ({chosen['macs'] / 1e6:.1f}M MACs, "
                 f"Δm {chosen['delta_m']:+.2f})")  # fmt: skip
    if "uniform" in report:
        uni = report["uniform"]
        lines.append(f"uniform scaling: {uni['configuration']} ({uni['macs'] / 1e6:.1f}M MACs, "
                     f"Δm {uni['delta_m']:+.2f})")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        budget = parse_macs(args.budget_macs)
        for flag, value in (("--out", args.out), ("--save-static", args.save_static)):
            if value and not Path(value).parent.is_dir():
                raise ValueError(f"{flag}: directory {str(Path(value).parent)!r} does not exist")
        model, cfg = load_slimmable(args.config, args.checkpoint, args.cfg_options)
        prefs = parse_preferences(args.prefs, list(model.tasks))
        canvas = config_input_size(cfg, args.shape, args.config)
        evaluator = ConfigurationEvaluator(model, cfg, args.num_val, args.calib_batches)
        report = run_search(evaluator, canvas, budget, prefs, args.uniform, args.exhaustive)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None
    print("\n".join(format_report(report, list(model.tasks))))
    if args.save_static:
        path = save_static(evaluator, report["search"]["configuration"], canvas, args.save_static)
        report["static_checkpoint"] = str(path)
        print(f"static checkpoint: {path}")
    if args.out:
        write_json(report, args.out)
        print(f"report: {args.out}")
    return report


if __name__ == "__main__":
    main()
