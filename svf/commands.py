"""What the areas' command modules (svf/engine/commands.py, svf/data/commands.py, svf/report/commands.py,
svf/bundle/commands.py) share: registering a command. A module of its own because svf/cli.py imports those
modules, and svf/engine/commands.py imports svf/data/commands.py."""
from __future__ import annotations

import argparse
from typing import Callable

Run = Callable[[argparse.Namespace], "int | None"]


def add_command(subparsers, name: str, run: Run, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """Add the command ``name`` (``svf <name>``, or a benchmark or action of a command) that runs ``run(args)``.

    ``help`` is its line in the parent's help. ``description`` heads its own help; without one, ``run``'s docstring
    does (its whitespace collapsed, as argparse shows it anyway), and without that svf/cli.py puts ``help`` there.
    Returns its parser, for the arguments."""
    if description is None and run.__doc__:
        description = " ".join(run.__doc__.split())
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(func=run)
    return parser
