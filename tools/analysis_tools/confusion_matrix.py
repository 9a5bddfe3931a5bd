"""Confusion matrices of a checkpoint's label tasks on the test set, as CSV and PNG heatmaps.

``python tools/analysis_tools/confusion_matrix.py CONFIG CHECKPOINT --out DIR [--task semseg]
[--normalize] [--cfg-options ...]``

Writes ``DIR/<task>_confusion.csv`` (pixel counts; rows ground truth, columns prediction, class
names as headers, ignore pixels excluded) and ``DIR/<task>_confusion.png`` for every label task
(``semseg``, ``human_parts``) or the ``--task`` ones. ``--normalize`` draws the heatmap as the
share of each ground-truth row and also writes ``<task>_confusion_normalized.csv``.
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from vision_mtl.apis import load_config
from vision_mtl.evaluation.confusion import save_confusion
from vision_mtl.workflows.confusion import confusion_on_test_set


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="a .pth file, or a work dir's last_checkpoint file")
    parser.add_argument("--out", required=True, help="directory for the CSV and PNG files")
    parser.add_argument(
        "--task", nargs="+", help="label tasks to write (default: every label task)"
    )
    parser.add_argument(
        "--normalize", action="store_true", help="heatmap (and an extra CSV) as row fractions"
    )
    parser.add_argument("--device", help="default: CUDA when present, else the CPU")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    try:
        matrices, metrics = confusion_on_test_set(cfg, args.checkpoint, args.task, args.device)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    written = {}
    for task, matrix in matrices.items():
        table, picture = save_confusion(matrix, args.out, args.normalize)
        written[task] = (table, picture)
        print(
            f"{task}: {int(matrix.counts.sum())} labelled pixels, mIoU "
            f"{metrics[f'{task}/mIoU']:.2f}, aAcc {metrics[f'{task}/aAcc']:.2f} -> {table}, "
            f"{picture}"
        )
    return written


if __name__ == "__main__":
    main()
