"""``svf <command>``: the command line every Snakemake rule calls, with explicit arguments.

Each command is declared by a ``_add_<command>(subparsers)`` function below that defines its arguments and points
``func`` at the code that runs it. Heavy modules (torch, pandas, matplotlib) are imported inside the command
functions only, so ``svf --help`` and light commands start fast; per-job start-up time matters for the demo DAG.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from . import __version__

CommandAdder = Callable[[argparse._SubParsersAction], None]
_COMMANDS: list[CommandAdder] = []


def command(adder: CommandAdder) -> CommandAdder:
    """Register a ``_add_<command>`` function."""
    _COMMANDS.append(adder)
    return adder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"svf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for adder in _COMMANDS:
        adder(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("svf: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


# --- commands -----------------------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
