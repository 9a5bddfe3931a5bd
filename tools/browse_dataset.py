"""Write PNG grids of a config's augmented training samples, every task map over the image.

``python tools/browse_dataset.py CONFIG --out DIR [--num N] [--split train|val]
[--cfg-options k=v ...]``: checks by eye that the image and every map stay aligned after the
training pipeline (scale, crop, flip, photometric distortion).
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction
from mmengine.registry import DefaultScope

from vision_mtl.apis import load_config
from vision_mtl.registry import DATASETS, SCOPE
from vision_mtl.visualization import draw_augmented_samples


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--split", choices=["train", "val"], default="train")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(cfg[f"{args.split}_dataloader"].dataset)
    paths = draw_augmented_samples(dataset, args.out, args.num)
    print(f"wrote {len(paths)} picture(s) to {args.out}/")
    return paths


if __name__ == "__main__":
    main()
