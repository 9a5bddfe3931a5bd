"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [options]``.

Prints one table of every task's metrics (and, with ``--trivial-baseline``, the trivial
predictors' figures beside them), optionally writes them as JSON and draws prediction pictures.
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction
from mmengine.dist import is_main_process

from vision_mtl.apis import build_test_runner, load_config, write_json
from vision_mtl.evaluation import format_metrics_table
from vision_mtl.evaluation.trivial import evaluate_config_trivial
from vision_mtl.models.builder import configure_pruned


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="a .pth file, or a work dir's last_checkpoint file")
    parser.add_argument("--work-dir")
    parser.add_argument("--out", help="write the metrics as JSON to this file")
    parser.add_argument("--show-dir", help="write input/ground-truth/prediction PNGs here")
    parser.add_argument("--max-show", type=int, default=16, help="pictures to write")
    parser.add_argument(
        "--trivial-baseline",
        action="store_true",
        help="also score the trivial predictors (majority class, mean depth, ...) and compare",
    )
    parser.add_argument(
        "--per-class",
        action="store_true",
        help="also print the per-class IoU of class tasks (always written by --out)",
    )
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: add horizontally flipped views"
    )
    parser.add_argument(
        "--tta-scales",
        nargs="+",
        type=float,
        metavar="S",
        help="test-time augmentation: input scale factors averaged in logit space (e.g. 0.75 1 1.25)",
    )
    parser.add_argument(
        "--partial-load",
        action="store_true",
        help="load only the checkpoint weights that fit the model (e.g. a single-task subset of "
        "a multitask checkpoint); the default is strict: a checkpoint that does not fit is an "
        "error naming the keys",
    )
    parser.add_argument(
        "--data-root", help="the dataset folder, for every dataloader (train, val and test)"
    )
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
    if args.tta or args.tta_scales:
        cfg.model.tta = dict(flip=args.tta, scales=args.tta_scales or [1.0])
    hooks = []
    if args.show_dir:
        hooks.append(
            dict(type="PredictionGridHook", out_dir=args.show_dir, max_images=args.max_show)
        )
    configure_pruned(cfg, args.checkpoint)  # a pruned checkpoint: build its architecture
    runner = build_test_runner(
        cfg,
        args.checkpoint,
        launcher=args.launcher,
        extra_hooks=hooks,
        strict_load=not args.partial_load,
    )
    metrics = runner.test()
    columns = {"model": metrics}
    if args.trivial_baseline:
        columns["trivial"] = evaluate_config_trivial(cfg)
    if is_main_process():
        print(format_metrics_table(metrics, columns=columns, per_class=args.per_class))
        if args.out:
            write_json({name: dict(values) for name, values in columns.items()}, args.out)
    return columns


if __name__ == "__main__":
    main()
