"""``svf bundle export | import | verify``: results bundles (arguments here, the work in svf/bundle/)."""
from __future__ import annotations

import argparse
import sys

from ..commands import add_command


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", nargs="+", help="config YAML files, merged in order as Snakemake does "
                                                          "(e.g. config/config.yaml config/demo.yaml)")
    source.add_argument("--config-json", help="the merged config as JSON (what the Snakemake rules pass)")
    parser.add_argument("--results", help="the <results> folder (default: the config's pathvars)")
    parser.add_argument("--resources", help="the <resources> folder (default: the config's pathvars)")


def _bundle_call(name: str, fn) -> int:
    """Run a bundle command; a refusal (BundleError, naming the archive and member or cell) becomes one line."""
    from .manifest import BundleError

    try:
        fn()
    except BundleError as exc:
        print(f"svf bundle {name}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_bundle(subparsers) -> None:
    parser = subparsers.add_parser("bundle", help="results bundles: every trained cell in one archive, checked "
                                                  "and re-evaluated elsewhere (docs/bundles.md)")
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)

    export = add_command(actions, "export", _run_export,
                         help="the finished cells of the config (or of --tables) -> one archive")
    export.add_argument("out", help="archive to write (.tar.gz, .tgz or .tar)")
    _add_config_arguments(export)
    export.add_argument("--tables", nargs="+", metavar="TABLE", help="only these tables' cells (default: the "
                                                                     "config's tables.build)")

    importer = add_command(
        actions, "import", _run_import,
        help="verify an archive against the config and place its cells so that their training is done (Snakemake "
             "then evaluates them: set results_from in the config)")
    importer.add_argument("archive", help="the bundle (.tar.gz, .tgz or .tar)")
    _add_config_arguments(importer)
    importer.add_argument("--overwrite", action="store_true",
                          help="replace files that exist with other contents (default: refuse)")

    verify = add_command(actions, "verify", _run_verify,
                         help="check an archive on its own: manifest, member names, checksums, and every file "
                              "readable as data (no config needed)")
    verify.add_argument("archive", help="the bundle (.tar.gz, .tgz or .tar)")


def _run_export(args):
    from ..engine.commands import _code_version
    from ..pipeline.specs import load_config
    from .export import export_bundle

    return _bundle_call("export", lambda: export_bundle(
        load_config(args.configfile, args.config_json), args.out, tables=args.tables, results=args.results,
        resources=args.resources, code_version=_code_version()))


def _run_import(args):
    from ..pipeline.specs import load_config
    from .verify import import_bundle

    def go():
        import_bundle(args.archive, load_config(args.configfile, args.config_json), results=args.results,
                      resources=args.resources, overwrite=args.overwrite)
        if args.configfile:
            print("svf bundle import: now run Snakemake with `results_from: <this archive>` in the config: it "
                  "then treats these cells' training as done and re-evaluates them (without it, rule train "
                  "re-runs a cell whose inputs are newer than its files)")

    return _bundle_call("import", go)


def _run_verify(args):
    from .verify import verify_bundle

    return _bundle_call("verify", lambda: verify_bundle(args.archive))


COMMANDS = (_add_bundle,)


def add_commands(subparsers) -> None:
    for adder in COMMANDS:
        adder(subparsers)
