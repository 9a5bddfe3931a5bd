"""Plot logged training scalars of one or more runs against iteration.

``python tools/analysis_tools/analyze_logs.py WORK_DIR [WORK_DIR ...] --keys loss lr semseg/mIoU
--out plot.png``

Reads every ``<WORK_DIR>/<timestamp>/vis_data/scalars.json`` mmengine wrote and draws one panel
per key, the runs overlaid in colours named by the legend. An unknown key is an error listing
the keys the runs logged.
"""

from __future__ import annotations

import argparse

from vision_mtl.workflows.logs import plot_runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dirs", nargs="+", metavar="WORK_DIR")
    parser.add_argument(
        "--keys", nargs="+", default=["loss"], help="logged keys to plot (default: loss)"
    )
    parser.add_argument("--out", required=True, help="the PNG to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        runs = plot_runs(args.work_dirs, args.keys, args.out)
    except KeyError as err:
        raise SystemExit(err.args[0]) from None
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    for label, scalars in runs.items():
        last = {key: max(scalars[key]) for key in args.keys if key in scalars}
        print(f"{label}: " + ", ".join(f"{k} to iteration {s}" for k, s in last.items()))
    print(f"wrote {args.out}")
    return runs


if __name__ == "__main__":
    main()
