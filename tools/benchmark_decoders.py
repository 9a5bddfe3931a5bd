"""Train and test several configs the same way and compare them by every metric and by Δm.

Used for the README's SynthScenes decoder comparison: multitask configs that differ only in the
decoder, and single-task configs that give the per-task references Δm is measured against.
Each config is trained by ``tools/train.py`` and tested by ``tools/test.py`` in its own
process, so a run here is exactly what a user's command would do; a config whose
``metrics.json`` already exists in its work dir is not run again (``--rerun`` forces it).
Parameters and MACs are counted at each config's input size, or ``--shape H W``
(:mod:`vision_mtl.input_size`). The work is :func:`vision_mtl.workflows.compare.compare_configs`.

Example::

    python tools/benchmark_decoders.py \\
        --multitask configs/quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py \\
            configs/taskexpert/*synthscenes*.py \\
        --single-task configs/single_task/*.py --out docs/benchmarks/decoders.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_mtl.apis import write_json
from vision_mtl.input_size import InputSizeError, add_shape_argument
from vision_mtl.workflows.compare import compare_configs, format_comparison_table

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--multitask", nargs="+", required=True, help="configs to compare")
    parser.add_argument(
        "--single-task", nargs="+", required=True, help="one config per task, for Δm"
    )
    parser.add_argument("--work-root", default="work_dirs/decoder_comparison")
    parser.add_argument("--out", default="docs/benchmarks/decoders.json")
    parser.add_argument("--rerun", action="store_true", help="train even if results exist")
    add_shape_argument(parser, "input size for parameters and MACs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    shape = tuple(args.shape) if args.shape else None
    try:
        report = compare_configs(
            args.multitask, args.single_task, ROOT / args.work_root, args.rerun, shape, ROOT
        )
    except (InputSizeError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None
    write_json(report, ROOT / args.out)
    print("\n".join(format_comparison_table(report)))
    return report


if __name__ == "__main__":
    main()
