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


# --- report: results.csv, tables, figures (owner: report) ---------------------------------------------------------


def _report_call(name: str, fn, *args, **kwargs) -> int:
    """Run a report function; its input errors (ValueError subclasses naming the file/key) become one line."""
    from .report.collect import CollectError
    from .report.figures import FigureError
    from .report.tables import TablesError
    from .tables_config import TablesConfigError

    try:
        fn(*args, **kwargs)
    except (CollectError, TablesError, FigureError, TablesConfigError, KeyError) as exc:
        print(f"svf {name}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_table_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results.csv written by `svf collect`")
    parser.add_argument("--tables", required=True, help="config/tables.yaml")
    parser.add_argument("--paper", required=True, help="config/paper_results.csv")
    parser.add_argument("--only", nargs="+", metavar="TABLE", help="only these tables (default: all)")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="|reproduced - paper| in mIoU points that counts as reproduced (default 1.0)")
    parser.add_argument("--demo", action="store_true", help="mark titles 'demo scale — not comparable'")
    parser.add_argument("--shots", nargs="+", type=int, help="restrict the tables to these shots")
    parser.add_argument("--folds", nargs="+", type=int, help="restrict the tables to these folds (means then "
                        "cover only these folds and are not compared with the paper)")
    parser.add_argument("--allow-mixed-config", action="store_true",
                        help="accept results of different config hashes")


def _load_table_inputs(args):
    from .report.collect import check_config_hashes, read_results
    from .report.tables import read_paper
    from .tables_config import load_tables

    tables = load_tables(args.tables)
    results = read_results(args.results)
    if "config_hash" in results.columns and len(results):
        check_config_hashes(results, args.allow_mixed_config)
    return tables, results, read_paper(args.paper)


@command
def _add_collect(subparsers) -> None:
    parser = subparsers.add_parser("collect", help="per-cell metrics.json + benchmarks -> results.csv")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--benchmarks", required=True, help="Snakemake benchmark directory (train/, evaluate/)")
    parser.add_argument("--out", required=True, help="results.csv to write")
    parser.add_argument("--cells", nargs="+", metavar="CELL_ID",
                        help="collect these cells (default: every metrics.json under --cells-root)")
    parser.add_argument("--allow-mixed-config", action="store_true",
                        help="accept cells of different config hashes")

    def run(args):
        from .report.collect import collect, write_results

        def go():
            results = collect(args.cells_root, args.benchmarks, args.cells, args.allow_mixed_config)
            write_results(results, args.out)
            print(f"svf collect: {len(results)} cells -> {args.out}")

        return _report_call("collect", go)

    parser.set_defaults(func=run)


@command
def _add_tables(subparsers) -> None:
    parser = subparsers.add_parser("tables", help="results.csv -> tableN.{csv,md,tex} beside the paper's numbers")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (results/tables)")
    parser.add_argument("--summary", help="summary markdown to write (default: <out>/summary.md unless --only)")
    parser.add_argument("--comparison", help="long comparison csv to write (default: <out>/comparison.csv "
                        "unless --only)")

    def run(args):
        from pathlib import Path

        from .report.tables import write_tables

        def go():
            tables, results, paper = _load_table_inputs(args)
            whole = args.only is None
            summary = args.summary or (Path(args.out) / "summary.md" if whole else None)
            comparison = args.comparison or (Path(args.out) / "comparison.csv" if whole else None)
            written = write_tables(tables, results, paper, args.out, names=args.only, tolerance=args.tolerance,
                                   demo=args.demo, shots=args.shots, folds=args.folds, summary=summary,
                                   comparison=comparison)
            print(f"svf tables: wrote {len(written)} files to {args.out}")

        return _report_call("tables", go)

    parser.set_defaults(func=run)


@command
def _add_figure6(subparsers) -> None:
    parser = subparsers.add_parser("figure6", help="Figure 6: layer3's top singular values before/after SVF")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--cells", nargs="+", required=True, metavar="CELL_ID",
                        help="SVF cells with singular_values.json (the paper: R50 baseline†+SVF 1-shot, one per fold)")
    parser.add_argument("--out", required=True, help="figure path (.png); a .pdf is written next to it")
    parser.add_argument("--top", type=int, default=30, help="how many of the largest initial values (default 30)")
    parser.add_argument("--data", help="also write the plotted numbers to this csv")
    parser.add_argument("--title", default="", help="figure title")

    def run(args):
        from .report.figures import write_figure6

        return _report_call("figure6", write_figure6, args.cells_root, args.cells, args.out, top=args.top,
                            data_csv=args.data, title=args.title)

    parser.set_defaults(func=run)


@command
def _add_curves(subparsers) -> None:
    parser = subparsers.add_parser("curves", help="training loss and validation mIoU per epoch of a set of cells")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--cells", nargs="*", default=[], metavar="CELL_ID", help="cells whose train_log.csv to plot")
    parser.add_argument("--out", required=True, help="figure path (format from the suffix: .png, .pdf)")
    parser.add_argument("--title", default="training curves", help="figure title (e.g. the table name)")

    def run(args):
        from .report.figures import write_curves

        return _report_call("curves", write_curves, args.cells_root, args.cells, args.out, args.title)

    parser.set_defaults(func=run)


@command
def _add_overview(subparsers) -> None:
    parser = subparsers.add_parser("overview", help="reproduced vs paper, one panel per table")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="figure path (format from the suffix: .png, .pdf)")

    def run(args):
        from .report.figures import write_overview

        def go():
            tables, results, paper = _load_table_inputs(args)
            write_overview(tables, results, paper, args.out, names=args.only, tolerance=args.tolerance,
                           demo=args.demo, shots=args.shots, folds=args.folds)

        return _report_call("overview", go)

    parser.set_defaults(func=run)


@command
def _add_bench_loader(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench-loader", help="episodes/second of the training episode loader (writes results/benchmarks/loader.json)")
    parser.add_argument("--root", help="prepared dataset (default: write a synthetic 500x375 one in a temp dir)")
    parser.add_argument("--splits", help="its splits directory (required with --root)")
    parser.add_argument("--setting", default="original", choices=["dagger", "original"])
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=100, help="episodes per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = one DataLoader worker)")
    parser.add_argument("--crop", type=int, default=473)
    parser.add_argument("--out", default="results/benchmarks/loader.json")

    def run(args):
        import json
        from pathlib import Path

        from .data.loader_bench import bench_loader

        result = bench_loader(args.root, args.splits, args.setting, args.fold, args.shot, args.episodes,
                              args.repeats, args.threads, args.crop)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
        rate = result["episodes_per_s"]
        print(f"bench-loader: {rate['median']:.1f} episodes/s (median; wall), "
              f"{result['cpu_episodes_per_s']['median']:.1f} per CPU-second -> {out}")
        return 0

    parser.set_defaults(func=run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
