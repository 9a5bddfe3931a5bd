"""Convert an official checkpoint of a published model into a vision_mtl checkpoint.

``python tools/convert_checkpoint.py --from invpt SRC DST [--config CONFIG]``

InvPT (github.com/prismformore/Multi-Task-Transformer): its NYUD-v2 or PASCAL-Context ViT-L
checkpoint becomes a checkpoint of configs/invpt/invpt_vit-l16_... (chosen by the checkpoint's
tasks unless --config names another), which ``tools/test.py`` evaluates. Every official tensor
without a place is listed (the modules InvPT builds but never runs); a tensor of ours left
unfilled, or an unknown leftover, refuses the conversion. docs/reproduce_invpt.md has the steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmengine.config import DictAction

from vision_mtl.workflows.convert import FORMATS, convert_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="fmt", required=True, choices=FORMATS)
    parser.add_argument("source", help="the official checkpoint (.pth)")
    parser.add_argument("dest", help="the vision_mtl checkpoint to write")
    parser.add_argument("--config", help="default: the ViT-L config of the checkpoint's tasks")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    try:
        result, config = convert_checkpoint(
            args.source,
            args.dest,
            args.config,
            fmt=args.fmt,
            cfg_options=args.cfg_options,
            config_root=ROOT,
        )
    except (OSError, ValueError) as err:  # a missing file, a directory as DST, a bad checkpoint
        raise SystemExit(str(err)) from None
    print(f"config: {config}")
    print(f"tasks: {', '.join(result.tasks)}")
    print(f"converted {len(result.state_dict)} tensors into {args.dest}")
    print(f"official tensors with no place ({len(result.unused)}, built but never used):")
    for key in result.unused:
        print(f"  {key}")
    return result


if __name__ == "__main__":
    main()
