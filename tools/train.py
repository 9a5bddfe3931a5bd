"""Train a multitask model from a config: ``python tools/train.py CONFIG [options]``."""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from vision_mtl.apis import build_train_runner, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="config file")
    parser.add_argument(
        "--work-dir", help="where logs and checkpoints go (default work_dirs/<config stem>)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH|auto",
        help="resume from PATH; with no PATH from the work dir's last checkpoint (an error if "
        "there is none); 'auto' resumes if there is one and starts afresh otherwise",
    )
    parser.add_argument(
        "--partial-load",
        action="store_true",
        help="load a load_from checkpoint non-strictly (only the weights that fit; the rest are "
        "listed in the log). The default is strict: a checkpoint that does not fit is an error",
    )
    parser.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        default=False,
        choices=["auto", "bf16", "fp16"],
        help="automatic mixed precision: bf16 autocast on the CPU, fp16 with a dynamic loss "
        "scale on CUDA (auto, the default), or the named dtype; losses stay fp32",
    )
    parser.add_argument(
        "--data-root", help="the dataset folder, for every dataloader (train, val and test)"
    )
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ..."
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument(
        "--strategy",
        choices=["fsdp"],
        help="fsdp: fully sharded data parallel (parameters, gradients and optimizer state "
        "sharded across the processes; needs --launcher); default DDP when distributed",
    )
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
    runner = build_train_runner(
        cfg,
        resume=args.resume,
        amp=args.amp,
        launcher=args.launcher,
        strict_load=not args.partial_load,
        strategy=args.strategy,
    )
    runner.train()


if __name__ == "__main__":
    main()
