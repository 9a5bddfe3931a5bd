"""Write SynthScenes in a real dataset's on-disk layout so the real loaders run end to end.

``python tools/make_synthscenes.py --layout nyud|pascal|cityscapes --out DIR --num N [--val-num M]
[--size H W] [--force]`` writes ``N`` training and ``M`` validation scenes as an NYUD-v2 tree (images,
segmentation, depth .npy, normals, edge, gt_sets) or a PASCAL_MT tree (JPEG images, VOC12 semseg,
PASCAL-Part .mat parts with every object as one person, normals, saliency, a Context LabelMap
.mat from which the loader derives edges, ImageSets/Context) or a Cityscapes tree (leftImg8bit,
gtFine label ids, uint16 disparity from the exact depth, camera JSON).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_mtl.datasets import SynthScenesDataset
from vision_mtl.datasets.layouts import (
    write_cityscapes_layout,
    write_nyud_layout,
    write_pascal_layout,
)

WRITERS = {
    "nyud": write_nyud_layout,
    "pascal": write_pascal_layout,
    "cityscapes": write_cityscapes_layout,
}
TASK_SETS = {"nyud": "nyud", "pascal": "pascal", "cityscapes": ["semseg", "depth"]}


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layout", choices=sorted(WRITERS), required=True)
    parser.add_argument("--out", required=True, help="root folder to write")
    parser.add_argument("--num", type=int, required=True, help="training scenes")
    parser.add_argument("--val-num", type=int, help="validation scenes (default: num // 4, >= 1)")
    parser.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty --out (replaces its splits)"
    )
    args = parser.parse_args(argv)
    counts = {"train": args.num, "val": args.val_num or max(1, args.num // 4)}
    for split, num in counts.items():
        if num < 1:
            parser.error(f"--num/--val-num must be >= 1, got {num} for {split}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        parser.error(
            f"--out {args.out!r} is not an empty directory; writing would replace its split "
            "lists and files. Choose a new folder, or pass --force to write into it anyway"
        )
    for split, num in counts.items():
        data = SynthScenesDataset(
            split=split,
            num_samples=num,
            tasks=TASK_SETS[args.layout],
            image_size=tuple(args.size),
            seed=args.seed,
        )
        WRITERS[args.layout]((data.load_sample(i) for i in range(num)), args.out, split)
    print(
        f"wrote {counts['train']} train and {counts['val']} val scenes to {args.out} ({args.layout})"
    )
    return counts


if __name__ == "__main__":
    main()
