"""Measure how well task preferences steer a trained slimmable model at one compute budget.

``python tools/analysis_tools/controllability.py CONFIG CHECKPOINT --budget-macs X
[--num-prefs 20] [--seed 0] [--num-val N] [--calib-batches B] [--shape H W] [--out JSON]``

Draws ``--num-prefs`` preference vectors, runs the width search of ``tools/search_widths.py``
for each, and reports per task the Spearman correlation between its preference and its score
(the paper's controllability; the mean over tasks is the headline), the hypervolume of the
scores reached, and both figures for uniform width scaling at the same budget
(:mod:`vision_mtl.workflows.controllability`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmengine.config import DictAction

from vision_mtl.input_size import add_shape_argument, config_input_size, positive_int
from vision_mtl.utils import int_at_least, write_json
from vision_mtl.workflows.controllability import format_controllability, measure_controllability
from vision_mtl.workflows.width_search import ConfigurationEvaluator, load_slimmable, parse_macs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--budget-macs", required=True, help="e.g. 3.2e8, 320M, 0.32G")
    parser.add_argument(
        "--num-prefs", type=int_at_least(2, "must be at least 2"), default=20,
        help="preference vectors drawn",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-val", type=positive_int, default=64, help="validation samples")
    parser.add_argument("--calib-batches", type=positive_int, default=8, help="BN calibration")
    add_shape_argument(parser, "input size the MACs are counted at")
    parser.add_argument("--out", help="JSON report")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        budget = parse_macs(args.budget_macs)
        if args.out and not Path(args.out).parent.is_dir():
            raise ValueError(f"--out: directory {str(Path(args.out).parent)!r} does not exist")
        model, cfg = load_slimmable(args.config, args.checkpoint, args.cfg_options)
        canvas = config_input_size(cfg, args.shape, args.config)
        evaluator = ConfigurationEvaluator(model, cfg, args.num_val, args.calib_batches)
        report = measure_controllability(evaluator, canvas, budget, args.num_prefs, args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None
    print("\n".join(format_controllability(report)))
    if args.out:
        write_json(report, args.out)
        print(f"report: {args.out}")
    return report


if __name__ == "__main__":
    main()
