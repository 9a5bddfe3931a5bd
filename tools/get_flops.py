"""Parameters and MACs of a config's model, per component (backbone, decoder, heads).

``python tools/get_flops.py CONFIG [--shape H W] [--out complexity.json]``

The model is built without pretrained weights on PyTorch's meta device and run once in tensor
mode on a 1×3×H×W batch: shapes only, nothing allocated or computed, so ViT-L counts in
seconds; the counts depend only on shapes and equal those on a real device (tested). The
default size is the data preprocessor's fixed canvas, else the test set's image size
(SynthScenes), else 512×512. MACs come from torch's FlopCounterMode with attention on its MATH
backend, so attention's matrix products are counted; one multiply-add is one MAC (see
:mod:`vision_mtl.complexity`).
"""

from __future__ import annotations

import argparse

import torch
from mmengine.config import DictAction

from vision_mtl.apis.inference import init_model
from vision_mtl.apis.runner import write_json
from vision_mtl.complexity import count_macs, count_parameters


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"), help="input size")
    parser.add_argument("--out", help="also write the figures as JSON to this file")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(argv)


def input_shape(cfg, shape: list[int] | None) -> tuple[int, int]:
    """``--shape``, else the preprocessor's canvas, else the test set's image size, else 512²."""
    if shape:
        if min(shape) < 1:
            raise ValueError(f"--shape must be two positive integers, got {shape}")
        return int(shape[0]), int(shape[1])
    size = cfg.model.get("data_preprocessor", {}).get("size")
    if not size:
        size = cfg.get("test_dataloader", {}).get("dataset", {}).get("image_size")
    return (int(size[0]), int(size[1])) if size else (512, 512)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    options = {"model.backbone.pretrained": None, **(args.cfg_options or {})}
    with torch.device("meta"):
        model = init_model(args.config, None, device="meta", cfg_options=options)
    height, width = input_shape(model.cfg, args.shape)
    params = count_parameters(model)
    macs = count_macs(model, torch.zeros(1, 3, height, width, device="meta"), mode="tensor")
    rows = [(name, params[name], macs[name]) for name in params]
    print(f"input 1x3x{height}x{width}; MACs: one multiply-add = 1 (FLOPs = 2 x MACs)")
    print(f"{'component':<10} {'params (M)':>12} {'MACs (G)':>10}")
    for name, p, m in rows:
        print(f"{name:<10} {p / 1e6:>12.2f} {m / 1e9:>10.2f}")
    result = {"input": [1, 3, height, width], "params": params, "macs": macs}
    if args.out:
        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
