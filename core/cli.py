"""The ``vpp`` command line: parses, delegates to ``core.commands.*``, and turns errors into one line.

Each sub-command lives in its own module under ``core.commands`` with ``add_parser(subparsers)``;
the list below is explicit (no import-time registry).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from core import __version__
from core.errors import VPPError

# (module under core.commands, sub-command name) in the order ``vpp --help`` shows them.
COMMANDS = (
    "bench",
    "train",
    "eval",
    "make_synthetic",
    "infer",
    "model_card",
    "export_model",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpp", description="Video Patch Pruning: inference, evaluation, training.")
    parser.add_argument("--version", action="version", version=f"vpp-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"core.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VPPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
