"""Benchmark configurations of one trained slimmable checkpoint: widths, MACs, ONNX Runtime
latency (interleaved, batch 1) and every task metric, each deployed as a static network.

``python tools/analysis_tools/benchmark_slimmable.py CONFIG CHECKPOINT
[--search BUDGET[:PREFS]]... [--alone NAME=METRICS_JSON]... [--num-val N] [--calib-batches B]
[--rounds R] [--threads T] [--shape H W] [--out JSON]``

Always measures ``full`` (every slot widest), ``half`` (every slot 0.5, when offered) and
``narrowest``; each ``--search 400M:semseg=3,depth=1`` adds the configuration
``tools/search_widths.py`` chooses for that budget and those preferences (searched on the same
validation samples). Prints one row per configuration with its latency relative to ``full``
(:mod:`vision_mtl.workflows.slimmable_table`). ``--alone full=alone_w1.0.json`` adds the Δm of
row ``full`` against a model trained alone (the ``--out`` JSON of ``tools/test.py`` on the config
``slimmable_alone_config.py`` writes), as ``delta_m_vs_alone``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmengine.config import DictAction

from vision_mtl.evaluation.multitask import primary_key
from vision_mtl.input_size import add_shape_argument, config_input_size, positive_int
from vision_mtl.models.slimmable.model import narrowest_configuration, slot_widths
from vision_mtl.utils import write_json
from vision_mtl.workflows.slimmable_table import benchmark_configurations
from vision_mtl.workflows.width_search import (
    ConfigurationEvaluator,
    delta_m_value,
    load_slimmable,
    parse_macs,
    parse_preferences,
    primary_value,
    run_search,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--search", action="append", default=[], metavar="BUDGET[:PREFS]")
    parser.add_argument("--alone", action="append", default=[], metavar="NAME=METRICS_JSON")
    parser.add_argument("--num-val", type=positive_int, default=200, help="validation samples")
    parser.add_argument("--calib-batches", type=positive_int, default=8, help="BN calibration")
    parser.add_argument("--rounds", type=positive_int, default=100, help="timed rounds")
    parser.add_argument("--threads", type=positive_int, help="ONNX Runtime threads")
    add_shape_argument(parser, "input size of export, MACs and timing")
    parser.add_argument("--out", help="JSON report")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        searches = []
        for item in args.search:
            budget, _, prefs = item.partition(":")
            searches.append((item, parse_macs(budget), prefs))
        alone = {}
        for item in args.alone:
            name, sep, path = item.partition("=")
            if not sep or not Path(path).is_file():
                raise ValueError(f"--alone: expected NAME=METRICS_JSON of an existing file, "
                                 f"got {item!r}")  # fmt: skip
            if name not in ("full", "half", "narrowest", *args.search):
                raise ValueError(f"--alone: no configuration named {name!r}; names: full, half, "
                                 f"narrowest or a --search value")  # fmt: skip
            data = json.loads(Path(path).read_text())
            alone[name] = data.get("model", data)  # tools/test.py --out: {"model": metrics}
        if args.out and not Path(args.out).parent.is_dir():
            raise ValueError(f"--out: directory {str(Path(args.out).parent)!r} does not exist")
        model, cfg = load_slimmable(args.config, args.checkpoint, args.cfg_options)
        tasks = list(model.tasks)
        parsed = [(item, budget, parse_preferences(p, tasks)) for item, budget, p in searches]
        canvas = config_input_size(cfg, args.shape, args.config)
        evaluator = ConfigurationEvaluator(model, cfg, args.num_val, args.calib_batches)
        offered = slot_widths(model)
        configs = {"full": {s: max(w) for s, w in offered.items()}}
        if all(0.5 in w for w in offered.values()):
            configs["half"] = {s: 0.5 for s in offered}
        configs["narrowest"] = narrowest_configuration(model)
        searched = {}
        for item, budget, prefs in parsed:
            report = run_search(evaluator, canvas, budget, prefs)
            configs[item] = report["search"]["configuration"]
            searched[item] = report
        result = benchmark_configurations(evaluator, configs, canvas, args.rounds, args.threads)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None
    result["searches"] = searched
    for name, metrics in alone.items():
        if name not in result["rows"]:
            raise SystemExit(
                f"--alone: no configuration named {name!r}; rows: {list(result['rows'])}"
            )
        row = result["rows"][name]
        row["delta_m_vs_alone"] = delta_m_value(row["metrics"], metrics, tasks)
        row["alone_metrics"] = metrics
        print(f"{name}: Δm against the model trained alone {row['delta_m_vs_alone']:+.2f}")
    slots = list(configs["full"])
    print(f"{'configuration':<34} " + " ".join(f"{s[:6]:>6}" for s in slots)
          + f" {'MACs':>8} {'ms':>7} {'×full':>6} {'Δm':>7} "
          + " ".join(f"{primary_key(t)[:14]:>14}" for t in tasks))  # fmt: skip
    for name, row in result["rows"].items():
        widths = " ".join(f"{row['configuration'][s]:>6g}" for s in slots)
        metrics = " ".join(f"{primary_value(row['metrics'], t):>14.3f}" for t in tasks)
        print(f"{name[:34]:<34} {widths} {row['macs'] / 1e6:>7.1f}M "
              f"{row['latency']['median_ms']:>7.2f} {row.get('latency_ratio', float('nan')):>6.3f} "
              f"{row['delta_m']:>+7.2f} {metrics}")  # fmt: skip
    if args.out:
        write_json(result, args.out)
        print(f"report: {args.out}")
    return result


if __name__ == "__main__":
    main()
