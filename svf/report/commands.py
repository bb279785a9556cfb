"""``svf`` commands of the report layer: collect, tables, figure6, figure4, curves, overview, study (arguments
here, the work in svf.report; pandas and matplotlib are imported inside the command functions)."""
from __future__ import annotations

import argparse

from .. import console
from ..commands import add_command
from ..errors import UnknownNameError, UsageError
from ..pipeline.cells import DEFAULT_SEED
from ..pipeline.paths import COMPARISON_NAME, PAPER_RESULTS, SUMMARY_NAME
from ..engine.commands import _add_cell_arguments


def _add_demo_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true",
                        help="mark the output 'demo scale — not comparable to the paper' (demo runs)")


def _add_cells_arguments(parser: argparse.ArgumentParser, **cells) -> None:
    """The cells a figure shows: ``--cells-root`` and the ``--cells`` under it (``cells``: how many, their help)."""
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--cells", metavar="CELL_ID", **cells)


def _add_table_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, nargs="+",
                        help="results.csv written by svf collect (several: combined, a shared cell once)")
    parser.add_argument("--tables", required=True, help="config/tables.yaml")
    parser.add_argument("--paper", required=True, help=PAPER_RESULTS)
    parser.add_argument("--only", nargs="+", metavar="TABLE", help="only these tables (default: all)")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="|reproduced - paper| in mIoU points that counts as reproduced (default 1.0)")
    _add_demo_argument(parser)
    parser.add_argument("--shots", nargs="+", type=int, help="restrict the tables to these shots")
    parser.add_argument("--folds", nargs="+", type=int, help="restrict the tables to these folds (means then "
                        "cover only these folds and are not compared with the paper)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEFAULT_SEED],
                        help=f"training seeds of every cell (default {DEFAULT_SEED}); several: mean ± std")
    parser.add_argument("--allow-mixed-config", action="store_true",
                        help="accept results of different config hashes")


def _load_table_inputs(args):
    from ..report.collect import check_config_hashes, read_results
    from ..report.comparison import read_paper
    from ..pipeline.tables import load_tables

    import pandas as pd

    tables = load_tables(args.tables)
    results = pd.concat([read_results(path) for path in args.results], ignore_index=True)
    results = results.drop_duplicates("cell_id").reset_index(drop=True)
    if "config_hash" in results.columns and len(results):
        check_config_hashes(results, args.allow_mixed_config)
    return tables, results, read_paper(args.paper)


def _add_collect(subparsers) -> None:
    parser = add_command(subparsers, "collect", _run_collect, help="per-cell metrics.json + benchmarks -> results.csv")
    parser.add_argument("--cells-root", required=True, help="results/cells")
    parser.add_argument("--benchmarks", required=True, help="Snakemake benchmark directory (train/, evaluate/)")
    parser.add_argument("--out", required=True, help="results.csv to write")
    parser.add_argument("--cells", nargs="+", metavar="CELL_ID",
                        help="collect these cells (default: every metrics.json under --cells-root)")
    parser.add_argument("--allow-mixed-config", action="store_true",
                        help="accept cells of different config hashes")


def _run_collect(args):
    from ..report.collect import collect, write_results

    results = collect(args.cells_root, args.benchmarks, args.cells, args.allow_mixed_config)
    write_results(results, args.out)
    console.result(f"{len(results)} cells -> {args.out}")


def _add_tables(subparsers) -> None:
    parser = add_command(subparsers, "tables", _run_tables,
                         help="results.csv -> tableN.{csv,md,tex} beside the paper's numbers")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (results/tables)")
    parser.add_argument("--summary", help="summary markdown to write (default: <out>/summary.md unless --only)")
    parser.add_argument("--comparison", help="long comparison csv to write (default: <out>/comparison.csv "
                        "unless --only)")
    parser.add_argument("--reevaluation-tolerance", type=float, default=None,
                        help="cells imported from a results bundle: |re-evaluated - recorded| mIoU beyond which a "
                             "value is flagged 'not reproduced from weights' (default 0.05)")


def _run_tables(args):
    from pathlib import Path

    from ..report.comparison import REEVALUATION_TOLERANCE
    from ..report.tables import write_tables

    tables, results, paper = _load_table_inputs(args)
    whole = args.only is None
    summary = args.summary or (Path(args.out) / SUMMARY_NAME if whole else None)
    comparison = args.comparison or (Path(args.out) / COMPARISON_NAME if whole else None)
    written = write_tables(tables, results, paper, args.out, names=args.only, tolerance=args.tolerance,
                           demo=args.demo, shots=args.shots, folds=args.folds, summary=summary,
                           comparison=comparison, seeds=args.seeds,
                           reevaluation_tolerance=(REEVALUATION_TOLERANCE if args.reevaluation_tolerance is None
                                                   else args.reevaluation_tolerance))
    console.result(f"{', '.join(args.only or tables['tables'])}: {len(results)} cells with results, "
                   f"wrote {len(written)} files to {args.out}")


def _add_figure6(subparsers) -> None:
    parser = add_command(subparsers, "figure6", _run_figure6,
                         help="Figure 6: layer3's top singular values before/after SVF")
    _add_cells_arguments(parser, nargs="+", required=True,
                         help="SVF cells with singular_values.json (the paper: R50 baseline†+SVF 1-shot, one per fold)")
    parser.add_argument("--out", required=True, help="figure path (.png); a .pdf is written next to it")
    parser.add_argument("--top", type=int, default=30, help="how many of the largest initial values (default 30)")
    parser.add_argument("--data", help="also write the plotted numbers to this csv")
    parser.add_argument("--title", default="", help="figure title (default: the paper's caption)")
    _add_demo_argument(parser)


def _run_figure6(args):
    from ..report.figures import write_figure6

    written = write_figure6(args.cells_root, args.cells, args.out, top=args.top, data_csv=args.data,
                            title=args.title, demo=args.demo)
    console.result(f"{len(args.cells)} cells -> {', '.join(map(str, written))}")


def _add_figure4(subparsers) -> None:
    parser = add_command(
        subparsers, "figure4", _run_figure4,
        help="Figure 4: cues of the singular components that changed most in a trained SVF cell")
    _add_cell_arguments(parser)
    parser.add_argument("--model", required=True, help="the cell's model.pt (singular_values.json beside it)")
    parser.add_argument("--images", type=int, default=4, help="query images to show")
    parser.add_argument("--out", required=True, help="figure path (.png)")
    _add_demo_argument(parser)


def _run_figure4(args):
    from ..pipeline.spec_types import CellSpec
    from ..pipeline.specs import load_spec
    from ..report.figure4 import figure4

    spec = CellSpec.from_json(load_spec(args.spec))
    shown = figure4(spec, args.dataset_root, args.splits, args.weights, args.model, args.out,
                    n_images=args.images, base_learner=args.base_learner, threads=args.threads, demo=args.demo)
    console.result(f"{spec.cell_id}: {shown['layer']} components {shown['decrease']} (largest decrease) and "
                   f"{shown['increase']} (largest increase) -> {args.out}")


def _add_curves(subparsers) -> None:
    parser = add_command(subparsers, "curves", _run_curves,
                         help="training loss and validation mIoU per epoch of a set of cells")
    _add_cells_arguments(parser, nargs="*", default=[], help="cells whose train_log.csv to plot")
    parser.add_argument("--out", required=True, help="figure path (format from the suffix: .png, .pdf)")
    parser.add_argument("--tables", help="config/tables.yaml: label and group the lines by the table's rows")
    parser.add_argument("--table", help="the table of --tables the cells belong to (e.g. table4)")
    parser.add_argument("--title", default="", help="figure title (default: the table's title)")
    _add_demo_argument(parser)


def _run_curves(args):
    """Training curves of a table's cells: per epoch the validation mIoU and the training loss (mean over folds),
    one panel per reference row and the rows compared with it (delta_to), labelled with the table's row labels and
    titled with its title when --tables/--table are given."""
    from ..pipeline.tables import load_tables, tables_of
    from ..report.curves import write_curves

    table = None
    if args.tables or args.table:
        if not (args.tables and args.table):
            raise UsageError("--tables and --table go together")
        tables = tables_of(load_tables(args.tables))
        if args.table not in tables:
            raise UnknownNameError(f"{args.tables} has no table {args.table!r} (it has {', '.join(tables)})")
        table = tables[args.table]
    write_curves(args.cells_root, args.cells, args.out, args.title, table=table, demo=args.demo)
    console.result(f"{len(args.cells)} cells -> {args.out}")


def _add_overview(subparsers) -> None:
    parser = add_command(subparsers, "overview", _run_overview, help="reproduced vs paper, one panel per table")
    _add_table_arguments(parser)
    parser.add_argument("--out", required=True, help="figure path (format from the suffix: .png, .pdf)")


def _run_overview(args):
    from ..report.figures import write_overview

    tables, results, paper = _load_table_inputs(args)
    write_overview(tables, results, paper, args.out, names=args.only, tolerance=args.tolerance,
                   demo=args.demo, shots=args.shots, folds=args.folds, seeds=args.seeds)
    console.result(f"{len(results)} cells -> {args.out}")


STUDY_HELP = ("the study of Tables 4-8 (docs/study.md): every distinct claim tested on paired runs (Holm, "
              "equivalence tests), rows with failure rates, the novel-class probe")


def _add_study(subparsers) -> None:
    parser = add_command(subparsers, "study", _run_study, help=STUDY_HELP, description=STUDY_HELP)
    _add_table_arguments(parser)
    parser.add_argument("--figures-dir", required=True, help="directory for study_claims.png, study_rows.png, ...")
    parser.add_argument("--out", required=True, help="directory for study.md, study.csv and study_rows.csv")
    parser.add_argument("--references", nargs="*", default=[], metavar="TABLE=ROW",
                        help="reference row of a table (defaults: frozen for tables 4-6, svf for 7-8)")
    parser.add_argument("--primary", nargs="*", metavar="'ROW vs REFERENCE'",
                        help="the primary claims (default: svf vs frozen, full vs frozen, svf vs full, svf-U vs "
                             "svf, svf-V vs svf)")
    parser.add_argument("--margin", type=float, default=1.0,
                        help="equivalence margin in mIoU points (default 1.0)")
    parser.add_argument("--probes", nargs="*", default=[], help="probe JSON files written by svf probe")


def _run_study(args):
    from ..report.study import DEFAULT_PRIMARY, write_study

    references = dict(item.split("=", 1) for item in args.references)
    tables, results, paper = _load_table_inputs(args)
    names = args.only or ["table4", "table5", "table6", "table7", "table8"]
    written = write_study(tables, results, paper, args.out, args.figures_dir, names, folds=args.folds,
                          references=references, primary=args.primary or DEFAULT_PRIMARY,
                          margin=args.margin, probes=args.probes, demo=args.demo)
    console.result(f"wrote {len(written)} files to {args.out} and {args.figures_dir}")


COMMANDS = (
    _add_collect, _add_tables, _add_figure6, _add_figure4, _add_curves, _add_overview, _add_study,
)


def add_commands(subparsers) -> None:
    for adder in COMMANDS:
        adder(subparsers)
