"""Draw predictions of a trained model as PNG grids.

``python tools/visualize.py CONFIG CHECKPOINT --out DIR [--num N] [--images A.png B.png ...]``:
with ``--images`` the given files are predicted (no ground truth row); otherwise the first
``--num`` samples of the config's test set are drawn with their ground truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_mtl.apis import inference, init_model, read_image
from vision_mtl.paths import output_path, unique_stems
from vision_mtl.visualization import draw_dataset_predictions, make_grid, save_grid


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--num", type=int, default=8, help="test-set samples to draw")
    parser.add_argument("--images", nargs="+", help="image files to predict instead")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    stems = unique_stems(args.images or [], "image")  # before any work: outputs never collide
    model = init_model(args.config, args.checkpoint, device=args.device)
    out = Path(args.out)
    written = []
    if args.images:
        for stem, path in stems.items():
            grid = make_grid(read_image(path), inference(model, path), None, model.num_classes)
            written.append(output_path(out, stem, ".png"))
            save_grid(grid, written[-1])
    else:
        written = draw_dataset_predictions(model, out, args.num)
    print(f"wrote {len(written)} picture(s) to {out}/")
    return written


if __name__ == "__main__":
    main()
