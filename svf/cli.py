"""``svf <command>``: the command line every Snakemake rule calls, with explicit arguments.

The commands live beside their code (svf/engine/commands.py, svf/data/commands.py, svf/report/commands.py,
svf/bundle/commands.py): each ``_add_<command>(subparsers)`` defines a command's arguments and points ``func`` at
the code that runs it. Heavy modules (torch, pandas, matplotlib) are imported inside the command functions only, so
``svf --help`` and light commands start fast; per-job start-up time matters for the demo DAG.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .bundle import commands as bundle_commands
from .data import commands as data_commands
from .engine import commands as engine_commands
from .report import commands as report_commands

AREAS = (engine_commands, data_commands, report_commands, bundle_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"svf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for area in AREAS:
        area.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process (the ``svf`` program, svf/__main__.py, first offers it to a warm server)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("svf: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
