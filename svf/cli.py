"""``svf <command>``: the command line every Snakemake rule calls, with explicit arguments.

The commands live beside their code (svf/engine/commands.py, svf/data/commands.py, svf/report/commands.py,
svf/bundle/commands.py): each ``_add_<command>(subparsers)`` registers its help line and ``_run_<command>``, the
code that runs it (whose docstring, if any, heads ``svf <command> -h``), with ``add_command`` of svf/commands.py and
defines the command's arguments. Heavy modules (torch, pandas, matplotlib) are imported inside the command functions
only, so ``svf --help`` and light commands start fast; per-job start-up time matters for the demo DAG.

A mistake ends a command with one paragraph (what is wrong, which file or key, what to do) and an exit code per
kind (svf/errors.py); ``--debug`` adds the traceback, ``--log FILE`` sends everything to FILE and keeps only the
result line, progress and errors on the terminal (svf/console.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from . import __version__, console
from .bundle import commands as bundle_commands
from .data import commands as data_commands
from .engine import commands as engine_commands
from .errors import describe, exit_code_table
from .report import commands as report_commands

AREAS = (engine_commands, data_commands, report_commands, bundle_commands)
DEBUG_ENV = "SVF_DEBUG"  # SVF_DEBUG=1: as --debug


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes in the same form as the other errors: one paragraph, exit code 2 (no usage dump)."""

    def error(self, message: str):
        command = self.prog.removeprefix("svf").strip()
        self.exit(2, f"{self.prog}: usage error: {message}\nSee `svf {command + ' ' if command else ''}--help` "
                     f"for the arguments. (exit code 2)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="svf", description="The SVF reproduction's command line: data, training, evaluation, tables and "
                                "figures (every Snakemake rule calls one of these commands).",
        epilog="exit codes:\n" + exit_code_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"svf {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback of an error (also: {DEBUG_ENV}=1); accepted after the command too")
    parser.add_argument("--log", metavar="FILE",
                        help="write all output, tracebacks included, to FILE; the terminal shows only the result "
                             "line, progress about once a minute and errors (what the pipeline's rules use)")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for area in AREAS:
        area.add_commands(subparsers)
    _describe_commands(parser)
    return parser


def _describe_commands(parser: argparse.ArgumentParser) -> None:
    """A command without its own description shows its one-line help at the top of `svf <command> -h`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                sub.description = sub.description or (helps.get(name, "").capitalize() + ".")
                _describe_commands(sub)


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` anywhere on the line (before or after the command)."""
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    return [a for a in argv if a != "--debug"], debug


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process (the ``svf`` program, svf/__main__.py, first offers it to a warm server)."""
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    name = args.command + (f" {args.benchmark}" if getattr(args, "benchmark", None) else "")
    with console.session(name, args.log):
        try:
            result = args.func(args)
        except KeyboardInterrupt:
            console.error(f"svf {name}: interrupted")
            return 130
        except Exception as exc:  # noqa: BLE001 - every error ends in one paragraph and its exit code
            return _report(exc, name, debug, logged=args.log is not None)
    return int(result or 0)


def _report(exc: Exception, name: str, debug: bool, logged: bool) -> int:
    described = describe(exc)
    if debug or logged:  # the traceback goes to the log (stderr of a logged command), or to the terminal
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if debug or logged else f"Rerun with `svf --debug {name} ...` for the traceback."
    if logged:
        hint = "The traceback is in the log."
    console.error(described.paragraph(name, hint))
    return described.exit_code
