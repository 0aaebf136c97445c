"""Entry point of the `egopress` console command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the module's handler imports heavy dependencies (torch,
open3d) lazily so that ``egopress --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from egopress_core.errors import EgoPressError

# Module names under egopress_core.cli, in the order `egopress --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("demo", "synth", "train", "eval", "convert_mano", "hand_preview", "sample_bag",
                                   "label_bag", "label_bags", "export_lerobot", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egopress",
        description="Hand pressure from egocentric RGB-D video (EgoPressDiff).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"egopress_core.cli.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EgoPressError as error:
        print(f"egopress {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
