"""Print a config with every ``_base_`` file and ``--cfg-options`` override resolved."""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from vision_mtl.apis import load_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args(argv)
    print(load_config(args.config, args.cfg_options).pretty_text)


if __name__ == "__main__":
    main()
