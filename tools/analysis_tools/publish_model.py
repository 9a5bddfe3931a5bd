"""Publish a checkpoint for release: weights and meta only, its hash in the file name.

``python tools/analysis_tools/publish_model.py CHECKPOINT OUT_DIR``

Drops the optimizer state, parameter schedulers and message hub (what resuming needs), keeps
``state_dict`` and ``meta`` (dataset classes, a pruned model's record), and writes
``OUT_DIR/<stem>-<first 8 hex digits of the file's SHA-256>.pth`` atomically.
"""

from __future__ import annotations

import argparse

from vision_mtl.workflows.publish import PublishedCheckpoint, publish_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .pth file, or a work dir's last_checkpoint file")
    parser.add_argument("out_dir", help="directory for the published file")
    return parser.parse_args(argv)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> PublishedCheckpoint:
    args = parse_args(argv)
    try:
        published = publish_checkpoint(args.checkpoint, args.out_dir)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    print(
        f"{published.path}: {_megabytes(published.size_before)} -> "
        f"{_megabytes(published.size_after)} (dropped {', '.join(published.dropped) or 'nothing'})"
    )
    print(f"sha256 {published.sha256}")
    return published


if __name__ == "__main__":
    main()
