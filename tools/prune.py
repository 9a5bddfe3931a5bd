"""Prune a trained multitask model's channels, fine-tune it, and report what it cost and gained.

``python tools/prune.py CONFIG CHECKPOINT --ratio R
[--importance magnitude|taylor|task-taylor|greedy] [--global] [--head-ratio H] [--iterative-steps K]
[--finetune-iters N] [--shape H W] --out DIR``

``greedy`` follows PAGCP (:mod:`vision_mtl.compress.greedy`): ``--ratio`` is then the largest
ratio any layer may lose, and each layer's ratio is searched in ``--greedy-step`` increments
until a task's loss on ``--val-batches`` validation batches rises past the layer's share of
``--greedy-budget``; ``--greedy-rank`` ranks channels within a layer by ``magnitude`` or
``task-taylor``.

Writes ``DIR/pruned.pth`` (state_dict + pruning record, before fine-tuning),
``DIR/pruned_finetuned.pth`` (after ``--finetune-iters`` iterations of the config's own schedule,
scaled to that length; its Runner work dir is ``DIR/finetune``) and ``DIR/report.json``:
parameters, MACs, ONNX Runtime latency, every task metric and Δm against the unpruned model,
before pruning, after pruning and after fine-tuning, all at the config's input size or
``--shape H W`` (:mod:`vision_mtl.input_size`). With ``--quantize`` the final model (fine-tuned
if it was) is also exported to ``DIR/export`` (TensorRT check and parity, as ``tools/export.py``)
and quantized there as ``tools/quantize.py`` does (``--calib-samples`` training images), and the
report gains an ``int8`` stage: the INT8 graph's ONNX Runtime latency and test metrics, with Δm
and speed-up against the unpruned fp32 model. Task output layers and the config's
``pruning.protected`` patterns are never pruned, nor the layers a decoder declares
``unprunable`` (fixed by its design: intermediate predictions, gates, attention heads). ``tools/test.py``, ``tools/export.py`` and
``init_model`` rebuild the pruned model from config + checkpoint.

Every setting is checked before the minutes of evaluation and pruning, and a bad one fails
with one sentence naming the flag (or config key) and what was expected, before anything is
written: ratios out of range, ``--layer-ratio`` items that are not ``NAME=R`` or name a missing
or protected layer, counts below their minimum, an ``--out`` that cannot be a writable
directory, config keys a phase needs, no input size, a checkpoint that is missing, already
pruned or does not fit the config, and the fine-tuning schedule, built and stepped at
``--finetune-iters`` first. ``report.json`` is written after pruning and again after
fine-tuning. The run itself is :func:`vision_mtl.workflows.prune.prune_workflow`.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from mmengine.config import DictAction

from vision_mtl.compress.greedy import GREEDY_RANKS
from vision_mtl.compress.pruning import PruningError
from vision_mtl.export.int8_comparison import Int8ComparisonError
from vision_mtl.export.verified import ExportCheckError
from vision_mtl.input_size import add_shape_argument
from vision_mtl.workflows.prune import PruneSettings, prune_workflow
from vision_mtl.workflows.prune_report import format_report_table
from vision_mtl.workflows.prune_settings import IMPORTANCE_CHOICES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--ratio", type=float, required=True, help="channel ratio removed")
    parser.add_argument("--importance", choices=IMPORTANCE_CHOICES, default="magnitude")
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
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="also export the final model, INT8-quantize it and report that stage",
    )
    parser.add_argument("--calib-samples", type=int, default=64, help="INT8 calibration images")
    add_shape_argument(parser, "input size for MACs, latency and tracing")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> PruneSettings:
    """The run's settings, one field per flag."""
    same = {f.name for f in fields(PruneSettings)} - {"layer_ratios", "shape"}
    return PruneSettings(
        **{name: getattr(args, name) for name in same},
        layer_ratios=args.layer_ratio,
        shape=tuple(args.shape) if args.shape else None,
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        result = prune_workflow(
            args.config, args.checkpoint, settings_from_args(args), args.cfg_options, log=print
        )
    except (PruningError, FileNotFoundError, ExportCheckError, Int8ComparisonError) as err:
        raise SystemExit(str(err)) from None
    print("\n".join(format_report_table(result.report, result.tasks)))
    return result.report


if __name__ == "__main__":
    main()
