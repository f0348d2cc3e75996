"""Entry point of the ``robot-offrl`` command.

Each workflow step registers its own subcommands from one module, so the top level stays a table of
contents and importing it stays cheap: heavy libraries (torch, robosuite) load only in the command
that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from robot_offrl import __version__
from robot_offrl.errors import UserError

# Module names under robot_offrl_cli, in the order the workflow reads.
COMMAND_MODULES = ("record_cmd", "data_cmd", "sim_cmd", "train_cmd", "demo_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-offrl",
        description="Record, import, train (Diffusion Policy / IDQL / RISE), validate in sim and deploy.",
        epilog="Example: robot-offrl data info data/lift.zarr",
    )
    parser.add_argument("--version", action="version", version=f"robot-offrl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"robot_offrl_cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "accepts_overrides", False):
        args.overrides = list(getattr(args, "overrides", []) or []) + extra
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"robot-offrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robot-offrl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
