"""Draw predictions of a trained model as PNG grids.

``python tools/visualize.py CONFIG CHECKPOINT --out DIR [--num N] [--images A.png B.png ...]
[--overlay [--alpha A]] [--depth-range LOW HIGH]``: with ``--images`` the given files are
predicted (photos: no ground-truth row); otherwise the first ``--num`` samples of the config's
test set are drawn with their ground truth. ``--overlay`` blends each map over the input
(``--alpha`` = weight of the map); ``--depth-range`` fixes the depth colour bar (metres),
otherwise the dataset's range is used. How to read the pictures: ``docs/pictures.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_mtl.apis import inference, init_model, read_image
from vision_mtl.paths import output_path, unique_stems
from vision_mtl.visualization import draw_dataset_predictions, make_grid, save_grid


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--alpha must lie in [0, 1], got {text}")
    return value


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--num", type=int, default=8, help="test-set samples to draw")
    parser.add_argument("--images", nargs="+", help="image files to predict instead")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--overlay", action="store_true", help="blend each map over the input image"
    )
    parser.add_argument(
        "--alpha", type=_alpha, default=0.5, help="weight of the map in --overlay (0-1)"
    )
    parser.add_argument(
        "--depth-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="metres at the ends of the depth colour bar (default: the dataset's range)",
    )
    args = parser.parse_args(argv)
    if args.depth_range and not args.depth_range[1] > args.depth_range[0]:
        parser.error(f"--depth-range must rise, got {args.depth_range}")
    stems = unique_stems(args.images or [], "image")  # before any work: outputs never collide
    model = init_model(args.config, args.checkpoint, device=args.device)
    ranges = {"depth": tuple(args.depth_range)} if args.depth_range else None
    alpha = args.alpha if args.overlay else None
    out = Path(args.out)
    written = []
    if args.images:
        meta = getattr(model, "dataset_meta", None) or {}
        for stem, path in stems.items():
            grid = make_grid(
                read_image(path),
                inference(model, path),
                None,
                model.num_classes,
                meta=meta,
                value_ranges=ranges,
                overlay_alpha=alpha,
            )
            written.append(output_path(out, stem, ".png"))
            save_grid(grid, written[-1])
    else:
        written = draw_dataset_predictions(model, out, args.num, ranges, alpha)
    print(f"wrote {len(written)} picture(s) to {out}/")
    return written


if __name__ == "__main__":
    main()
