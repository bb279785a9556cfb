"""The variance pilot of the study's third design (docs/study.md, "Variance pilot"): how much the paired
differences between rows spread under each candidate training setting, measured on seeds the study never uses.

A setting is one results root (``results/pilot/<setting>``) holding the cells of three rows (frozen, SVF, full
fine-tuning) on folds 0-3 and the pilot's seeds. For each comparison the pilot reports the pooled within-fold
standard deviation of the paired differences (the stratified model's ``se * sqrt(n)``: the spread a study's
half-width scales with), their root mean square over the comparisons, the failed runs and the lowest row mean.
Blind by construction: it prints no difference's estimate or sign and no row's mean by name, so the setting is
chosen by its spread alone (the rule fixed in docs/study.md before the pilot ran).

    python -m svf.report.pilot targets RESULTS_ROOT        # the metrics.json files Snakemake builds for one setting
    python -m svf.report.pilot summary RESULTS_ROOT...     # one line per setting (markdown), after they ran
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..pipeline.paths import METRICS, cell_file, expand_pathvars
from .claims import stratified_mean

ROWS = ("frozen", "svf", "full")                      # the policies of the paper's central ordering
COMPARISONS = (("svf", "frozen"), ("full", "frozen"), ("svf", "full"))
FOLDS = (0, 1, 2, 3)
SEEDS = (901, 902, 903, 904)                          # never a study design's seed nor a probe seed (101, 102)
# The pilot's cells: the study's R50 baseline†, 1-shot, authors' recipe; the row is the cell's policy.
CELL = {"dataset": "pascal", "backbone": "resnet50", "method": "baseline", "setting": "dagger", "recipe": "svf-code",
        "shot": 1}


def metrics_path(root: str | Path, row: str, fold: int, seed: int) -> Path:
    """The metrics.json of one pilot run under the results root ``root``, in the workflow's cell layout."""
    cell = {**CELL, "policy": row, "fold": fold, "seed": seed}
    return Path(expand_pathvars(cell_file(cell, METRICS), {}, results=str(root)))


def targets(root: str | Path) -> list[str]:
    """The metrics.json paths of one setting's runs, in the workflow's cell layout."""
    return [str(metrics_path(root, r, f, s)) for r in ROWS for f in FOLDS for s in SEEDS]


def read_runs(root: str | Path) -> pd.DataFrame:
    """One line per run found under ``root``: row, fold, seed, value (test mIoU), floor (all-foreground mIoU)."""
    records = []
    for row in ROWS:
        for fold in FOLDS:
            for seed in SEEDS:
                path = metrics_path(root, row, fold, seed)
                if path.exists():
                    metrics = json.loads(path.read_text())
                    records.append({"row": row, "fold": fold, "seed": seed, "value": float(metrics["miou"]),
                                    "floor": float(metrics.get("all_foreground_miou") or math.nan)})
    return pd.DataFrame.from_records(records, columns=["row", "fold", "seed", "value", "floor"])


def paired_sd(runs: pd.DataFrame, row: str, reference: str) -> tuple[float, int]:
    """(pooled within-fold SD of row - reference over the (fold, seed) pairs both ran, number of pairs)."""
    a = runs[runs["row"] == row].set_index(["fold", "seed"])["value"]
    b = runs[runs["row"] == reference].set_index(["fold", "seed"])["value"]
    diffs = (a - b).dropna().rename("value").reset_index()
    stats = stratified_mean(diffs)
    return stats["se"] * math.sqrt(stats["n"]), stats["n"]


def spread(runs: pd.DataFrame) -> dict:
    """The pilot's blind summary of one setting."""
    sds = {f"{r} - {f}": paired_sd(runs, r, f)[0] for r, f in COMPARISONS}
    row_means = runs.groupby(["row", "fold"])["value"].mean().groupby("row").mean()
    return {**{f"sd {k}": v for k, v in sds.items()},
            "sd rms": math.sqrt(sum(v * v for v in sds.values()) / len(sds)),
            "sd max": max(sds.values()),
            "runs": len(runs),
            "failed": int((runs["value"] <= runs["floor"]).sum()),
            "lowest row mean": float(row_means.min()) if len(row_means) else math.nan}


def summary(roots: Sequence[str | Path]) -> pd.DataFrame:
    return pd.DataFrame([{"setting": Path(r).name, **spread(read_runs(r))} for r in roots]).set_index("setting")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svf.report.pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["targets", "summary"])
    parser.add_argument("roots", nargs="+", help="results root of each setting (results/pilot/<setting>)")
    args = parser.parse_args(argv)
    if args.command == "targets":
        print("\n".join(t for root in args.roots for t in targets(root)))
        return 0
    table = summary(args.roots)
    if (table["runs"] < len(ROWS) * len(FOLDS) * len(SEEDS)).any():
        print("svf pilot: some runs are missing (see the runs column)", file=sys.stderr)
    print(table.round(2).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
