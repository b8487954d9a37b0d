"""The ``blaze`` command: one subcommand per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from blaze_ai import __version__
from blaze_ai.errors import BlazeError
from blaze_ai.observability.logging import configure_logging

# Each module has add_parser(subparsers), which sets func=run(args) -> int.
COMMANDS = ("serve", "generate", "image", "embed", "config_check", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blaze", description="Blaze AI inference server")
    parser.add_argument("--version", action="version", version=f"blaze-ai {__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info; serve: server.log_level)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"blaze_ai.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"blaze_ai.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    configure_logging(args.log_level or "info")
    try:
        return int(args.func(args))
    except BlazeError as exc:
        print(f"blaze: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
