"""Write the config that trains one width of a slimmable config on its own (the baseline).

``python tools/analysis_tools/slimmable_alone_config.py CONFIG --width W --out FILE.py
[--shape H W]``

Every slot at width ``W``: the plain multitask model of the same architecture (for ``W`` < 1
with the channels of that width, as a pruning record), trained by ``tools/train.py FILE.py``
with the normal train step and the same data and schedule. The slimmable model's widest and
0.5 configurations are compared with these in docs/slimmable.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_mtl.apis import load_config
from vision_mtl.input_size import add_shape_argument, config_input_size
from vision_mtl.utils import atomic_write_bytes
from vision_mtl.workflows.width_search import alone_config


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--width", type=float, required=True)
    parser.add_argument("--out", required=True, help="the config file to write (.py)")
    add_shape_argument(parser, "input size the record is traced at")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.suffix != ".py" or not out.parent.is_dir():
            raise ValueError(f"--out: expected a .py file in an existing directory, got {out}")
        cfg = load_config(args.config)
        cfg = alone_config(cfg, args.width, config_input_size(cfg, args.shape, args.config))
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from None
    atomic_write_bytes(cfg.pretty_text.encode(), out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
