"""The study's pilots (docs/study.md): how much the paired differences between rows spread, and how many runs
collapse, under each candidate training setting, measured on seeds the study never uses. The variance pilot (third
design, "Variance pilot") compared schedules on rows frozen, SVF and full fine-tuning; the collapse pilot ("Collapse
pilot") compares rates on the five rows of the primary claims.

A setting is one results root (``results/pilot/<setting>``) holding the cells of the pilot's rows on folds 0-3 and
its seeds. For each comparison the pilot reports the pooled within-fold standard deviation of the paired differences
(the stratified model's ``se * sqrt(n)``: the spread a study's half-width scales with), their root mean square over
the comparisons, the failed runs, the lowest row mean and the share of runs off the all-background plateau by the
epoch-10 validation (from each cell's train_log.csv). Blind by construction: it prints no difference's estimate or
sign and no row's mean by name, so the setting is chosen by its spread alone (the rule fixed in docs/study.md before
the pilot ran).

    python -m svf.report.pilot targets RESULTS_ROOT [--pilot collapse]     # the metrics.json files of one setting
    python -m svf.report.pilot summary RESULTS_ROOT... [--pilot collapse]  # one line per setting, after they ran
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..pipeline.paths import METRICS, TRAIN_LOG, cell_file, expand_pathvars
from .claims import stratified_mean

ROWS = ("frozen", "svf", "full")                      # the policies of the paper's central ordering
COMPARISONS = (("svf", "frozen"), ("full", "frozen"), ("svf", "full"))
FOLDS = (0, 1, 2, 3)
SEEDS = (901, 902, 903, 904)                          # never a study design's seed nor a probe seed (101, 102)
PLATEAU_EPOCH = 10                                    # "off the plateau": validation mIoU > 0 by this epoch


@dataclass(frozen=True)
class Pilot:
    """Which rows, comparisons and seeds one pilot runs (on folds 0-3)."""

    rows: tuple
    comparisons: tuple
    seeds: tuple


PILOTS = {
    "variance": Pilot(ROWS, COMPARISONS, SEEDS),      # the third design's (docs/study.md, "Variance pilot")
    # the sixth design's (docs/study.md, "Collapse pilot"): the five rows and comparisons of the primary claims, seeds
    # none of the study's designs (1-56), probes (101, 102) or the variance pilot (901-904) used
    "collapse": Pilot(("frozen", "svf", "full", "svf-U", "svf-V"),
                      (("svf", "frozen"), ("full", "frozen"), ("svf", "full"), ("svf-U", "svf"), ("svf-V", "svf")),
                      (905, 906, 907, 908)),
}
# The pilot's cells: the study's R50 baseline†, 1-shot, authors' recipe; the row is the cell's policy.
CELL = {"dataset": "pascal", "backbone": "resnet50", "method": "baseline", "setting": "dagger", "recipe": "svf-code",
        "shot": 1}


def metrics_path(root: str | Path, row: str, fold: int, seed: int, name: str = METRICS) -> Path:
    """The metrics.json (or ``name``) of one pilot run under the results root ``root``, in the workflow's layout."""
    cell = {**CELL, "policy": row, "fold": fold, "seed": seed}
    return Path(expand_pathvars(cell_file(cell, name), {}, results=str(root)))


def targets(root: str | Path, pilot: Pilot = PILOTS["variance"]) -> list[str]:
    """The metrics.json paths of one setting's runs, in the workflow's cell layout."""
    return [str(metrics_path(root, r, f, s)) for r in pilot.rows for f in FOLDS for s in pilot.seeds]


def off_plateau(train_log: Path, epoch: int = PLATEAU_EPOCH) -> float:
    """1.0 when a validation by ``epoch`` scored above 0 (the run left the all-background start), 0.0 when none did,
    NaN without a log."""
    if not train_log.exists():
        return math.nan
    log = pd.read_csv(train_log).dropna(subset=["val_miou"])
    return float(bool(((log["epoch"] <= epoch) & (log["val_miou"] > 0)).any()))


def read_runs(root: str | Path, pilot: Pilot = PILOTS["variance"]) -> pd.DataFrame:
    """One line per run found under ``root``: row, fold, seed, value (test mIoU), floor (all-foreground mIoU),
    off_plateau (:func:`off_plateau` of its train_log.csv)."""
    records = []
    for row in pilot.rows:
        for fold in FOLDS:
            for seed in pilot.seeds:
                path = metrics_path(root, row, fold, seed)
                if path.exists():
                    metrics = json.loads(path.read_text())
                    records.append({"row": row, "fold": fold, "seed": seed, "value": float(metrics["miou"]),
                                    "floor": float(metrics.get("all_foreground_miou") or math.nan),
                                    "off_plateau": off_plateau(metrics_path(root, row, fold, seed, TRAIN_LOG))})
    return pd.DataFrame.from_records(records, columns=["row", "fold", "seed", "value", "floor", "off_plateau"])


def paired_sd(runs: pd.DataFrame, row: str, reference: str) -> tuple[float, int]:
    """(pooled within-fold SD of row - reference over the (fold, seed) pairs both ran, number of pairs)."""
    a = runs[runs["row"] == row].set_index(["fold", "seed"])["value"]
    b = runs[runs["row"] == reference].set_index(["fold", "seed"])["value"]
    diffs = (a - b).dropna().rename("value").reset_index()
    stats = stratified_mean(diffs)
    return stats["se"] * math.sqrt(stats["n"]), stats["n"]


def spread(runs: pd.DataFrame, pilot: Pilot = PILOTS["variance"]) -> dict:
    """The pilot's blind summary of one setting."""
    sds = {f"{r} - {f}": paired_sd(runs, r, f)[0] for r, f in pilot.comparisons}
    row_means = runs.groupby(["row", "fold"])["value"].mean().groupby("row").mean()
    return {**{f"sd {k}": v for k, v in sds.items()},
            "sd rms": math.sqrt(sum(v * v for v in sds.values()) / len(sds)),
            "sd max": max(sds.values()),
            "runs": len(runs),
            "failed": int((runs["value"] <= runs["floor"]).sum()),
            "lowest row mean": float(row_means.min()) if len(row_means) else math.nan,
            f"off plateau by epoch {PLATEAU_EPOCH}": float(runs["off_plateau"].mean())}


def summary(roots: Sequence[str | Path], pilot: Pilot = PILOTS["variance"]) -> pd.DataFrame:
    return pd.DataFrame([{"setting": Path(r).name, **spread(read_runs(r, pilot), pilot)}
                         for r in roots]).set_index("setting")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svf.report.pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["targets", "summary"])
    parser.add_argument("roots", nargs="+", help="results root of each setting (results/pilot/<setting>)")
    parser.add_argument("--pilot", choices=sorted(PILOTS), default="variance",
                        help="which pilot's rows and seeds (default: variance, the third design's)")
    args = parser.parse_args(argv)
    pilot = PILOTS[args.pilot]
    if args.command == "targets":
        print("\n".join(t for root in args.roots for t in targets(root, pilot)))
        return 0
    table = summary(args.roots, pilot)
    if (table["runs"] < len(pilot.rows) * len(FOLDS) * len(pilot.seeds)).any():
        print("svf pilot: some runs are missing (see the runs column)", file=sys.stderr)
    print(table.round(2).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
