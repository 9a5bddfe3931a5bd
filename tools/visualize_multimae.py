"""Draw MultiMAE reconstructions of a pretraining checkpoint as one PNG grid.

``python tools/visualize_multimae.py CONFIG CHECKPOINT --out DIR [--num N] [--data-root ROOT]``
writes ``DIR/multimae_reconstruction.png``: for the first ``N`` training samples of the config
(read without random transforms), one row per modality with the masked input (masked patches
grey), the prediction and the target. Masks come from the model's ``eval_seed``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmengine.config import DictAction
from mmengine.registry import DefaultScope

from vision_mtl.apis import init_model, load_config
from vision_mtl.engine.multimae_hook import draw_reconstructions
from vision_mtl.models.multimae.pictures import save_png
from vision_mtl.registry import DATASETS, SCOPE


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="a .pth file, a work dir or its last_checkpoint")
    parser.add_argument("--out", required=True, help="folder for the PNG")
    parser.add_argument("--num", type=int, default=4, help="samples to draw (default 4)")
    parser.add_argument("--data-root", help="the dataset folder (file-based configs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ..."
    )
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be >= 1, got {args.num}")
    cfg = load_config(args.config, args.cfg_options, data_root=args.data_root)
    model = init_model(cfg, args.checkpoint, device=args.device)
    loader = cfg.get("val_dataloader") or cfg.get("train_dataloader")
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build(loader["dataset"])
    grid = draw_reconstructions(model, dataset, args.num)
    path = save_png(grid, Path(args.out) / "multimae_reconstruction.png")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
