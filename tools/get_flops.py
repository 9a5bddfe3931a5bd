"""Parameters and MACs of a config's model, per component (backbone, decoder, heads).

``python tools/get_flops.py CONFIG [--shape H W] [--out complexity.json]``

The model is built without pretrained weights on PyTorch's meta device and run once in tensor
mode on a 1×3×H×W batch: shapes only, nothing allocated or computed, so ViT-L counts in
seconds; the counts depend only on shapes and equal those on a real device (tested). The size
is ``--shape H W``, else the data preprocessor's fixed canvas, else the test set's image size
(SynthScenes); a config with neither (Cityscapes) needs ``--shape``
(:mod:`vision_mtl.input_size`). MACs come from torch's FlopCounterMode with attention on its MATH
backend, so attention's matrix products are counted; one multiply-add is one MAC (see
:mod:`vision_mtl.complexity`).
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from vision_mtl.apis.complexity import config_complexity
from vision_mtl.apis.runner import load_config, write_json
from vision_mtl.input_size import InputSizeError, add_shape_argument, config_input_size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    add_shape_argument(parser)
    parser.add_argument("--out", help="also write the figures as JSON to this file")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        height, width = config_input_size(cfg, args.shape, args.config)
    except (FileNotFoundError, InputSizeError) as err:
        raise SystemExit(str(err)) from None
    result = config_complexity(cfg, (height, width))
    params, macs = result["params"], result["macs"]
    print(f"input 1x3x{height}x{width}; MACs: one multiply-add = 1 (FLOPs = 2 x MACs)")
    print(f"{'component':<10} {'params (M)':>12} {'MACs (G)':>10}")
    for name in params:
        print(f"{name:<10} {params[name] / 1e6:>12.2f} {macs[name] / 1e9:>10.2f}")
    if args.out:
        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
