"""Per-step training time of every weighting strategy relative to fixed weights, in one run.

``python tools/analysis_tools/benchmark_weighting.py [CONFIG] [--steps 10] [--warmup 2]
[--threads T] [--out docs/benchmarks/weighting_steps.json]``

Every strategy trains its own copy of CONFIG's model (default: the quickstart) on the same
in-memory batches, one step each per round, interleaved; the table gives the median step time,
its ratio to ``Fixed``, the forward and backward passes per step and the extra memory
(:mod:`vision_mtl.workflows.weighting_benchmark`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vision_mtl.apis import load_config
from vision_mtl.input_size import positive_int
from vision_mtl.utils import write_json
from vision_mtl.workflows.weighting_benchmark import benchmark_weightings, format_rows

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = "configs/quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default=QUICKSTART)
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps each")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps each first")
    parser.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="work_dirs/benchmarks/weighting_steps.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / args.config if not Path(args.config).is_absolute() else args.config)
    report = benchmark_weightings(cfg, steps=args.steps, warmup=args.warmup)
    report["config"] = args.config
    write_json(report, args.out)
    print("\n".join(format_rows(report)))
    return report


if __name__ == "__main__":
    main()
