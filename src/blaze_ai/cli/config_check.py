"""``blaze config check FILE``: validate a config file and print it resolved."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from blaze_ai.config import load_config, redacted
from blaze_ai.errors import ConfigError


def add_parser(subparsers: Any) -> None:
    config = subparsers.add_parser("config", help="work with configuration files")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate FILE and print the resolved config")
    check.add_argument("file", nargs="?", help="YAML config (default: the embedded default)")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"blaze: invalid config: {exc.message}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(redacted(config), sort_keys=False), end="")
    print(f"# {args.file or 'embedded default'}: OK", file=sys.stderr)
    return 0
