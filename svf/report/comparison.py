"""Our numbers beside the paper's: ``compare`` makes one long frame with, for every value a table shows (a fold or
the mean, per row and shot), the reproduced mIoU, the paper's number and their difference, plus the gain over the
row's ``delta_to`` reference (the paper's "(+x.xx)"); ``summarise`` counts it per table. Cells imported from a
results bundle (svf/bundle/) also carry the number the bundle recorded; a value whose re-evaluation here differs
from it by more than the re-evaluation tolerance is flagged. svf/report/tables.py lays the frame out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ResultsError
from ..pipeline.cells import DEFAULT_SEED, cell_id
from ..pipeline.tables import table_entries, tables_of

PAPER_FOLDS = ("0", "1", "2", "3", "mean")
#: |re-evaluated - recorded| in mIoU points an imported cell may differ by (GPU nondeterminism; CPU runs give 0).
REEVALUATION_TOLERANCE = 0.05


class TablesError(ResultsError):
    """A table input is missing or malformed; the message names the file, key or value at fault."""


# --- inputs -------------------------------------------------------------------------------------------------------

def read_paper(path: str | Path) -> pd.DataFrame:
    """config/paper_results.csv: table,row,shot,fold,value[,delta] with fold in 0..3 or 'mean'."""
    path = Path(path)
    if not path.is_file():
        raise TablesError(f"{path}: paper results file not found")
    paper = pd.read_csv(path, dtype={"table": str, "row": str, "fold": str})
    missing = [c for c in ("table", "row", "shot", "fold", "value") if c not in paper.columns]
    if missing:
        raise TablesError(f"{path}: missing column(s) {missing}")
    if "delta" not in paper.columns:
        paper["delta"] = np.nan
    bad = paper.loc[~paper["fold"].isin(PAPER_FOLDS), "fold"]
    if not bad.empty:
        raise TablesError(f"{path}: fold value(s) {sorted(set(bad))} not in {list(PAPER_FOLDS)}")
    dup = paper.duplicated(["table", "row", "shot", "fold"], keep=False)
    if dup.any():
        keys = paper.loc[dup, ["table", "row", "shot", "fold"]].values.tolist()
        raise TablesError(f"{path}: duplicate entries {keys}")
    paper["shot"] = paper["shot"].astype(int)
    return paper[["table", "row", "shot", "fold", "value", "delta"]]


# --- comparison ---------------------------------------------------------------------------------------------------

def _entries(tables: Mapping[str, Mapping[str, Any]], names: Sequence[str], shots, folds,
             seeds: Sequence[int]) -> pd.DataFrame:
    """Every (table, row, shot, fold, seed) a table needs, with its cell id and row metadata."""
    records = []
    for name in names:
        table = tables[name]
        order = {row["id"]: i for i, row in enumerate(table["rows"])}
        for row, shot, fold, cell in table_entries(table, shots=shots, folds=folds, seeds=seeds):
            records.append({"table": name, "row": row["id"], "order": order[row["id"]], "label": row["label"],
                            "group": row["group"], "delta_to": row.get("delta_to"), "shot": shot,
                            "fold": str(fold), "seed": cell["seed"], "cell_id": cell_id(cell)})
    return pd.DataFrame.from_records(records, columns=["table", "row", "order", "label", "group", "delta_to",
                                                       "shot", "fold", "seed", "cell_id"])


def _complete_mean(values: pd.core.groupby.SeriesGroupBy) -> pd.Series:
    """Mean of each group, NaN unless every member has a value (as the paper's means need every fold)."""
    stats = values.agg(["mean", "count", "size"])
    return stats["mean"].where(stats["count"] == stats["size"])


def _over_seeds(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys`` group: mean over seeds (``reproduced``), their sample std and number."""
    grouped = per_seed.groupby(keys, sort=False)
    out = grouped.first().reset_index()
    out["reproduced"] = _complete_mean(grouped["reproduced"]).to_numpy()
    out["reproduced_std"] = grouped["reproduced"].std(ddof=1).to_numpy()
    out["n_seeds"] = grouped["reproduced"].count().to_numpy()
    out["recorded"] = _complete_mean(grouped["recorded"]).to_numpy()
    out["not_reproduced"] = grouped["not_reproduced"].any().to_numpy()
    out["cell_id"] = grouped["cell_id"].agg(" ".join).to_numpy()
    return out


def _attach_results(entries: pd.DataFrame, results: pd.DataFrame, reevaluation_tolerance: float) -> None:
    """Each entry's mIoU, the bundle's recorded mIoU and whether they differ, and its cell's cost (in place)."""
    miou = results.set_index("cell_id")["miou"] if len(results) else pd.Series(dtype=float)
    entries["reproduced"] = entries["cell_id"].map(miou).astype(float)
    recorded = (results.set_index("cell_id")["recorded_miou"] if "recorded_miou" in results.columns and len(results)
                else pd.Series(dtype=float))
    entries["recorded"] = entries["cell_id"].map(recorded).astype(float)
    entries["not_reproduced"] = (entries["reproduced"] - entries["recorded"]).abs() > reevaluation_tolerance + 1e-9
    entries["reevaluation_tolerance"] = float(reevaluation_tolerance)
    for column in ("device_hours", "device"):  # cost of the table's cells, for the summary
        entries[column] = (entries["cell_id"].map(results.set_index("cell_id")[column])
                           if column in results.columns and len(results) else np.nan)


def _fold_and_mean_values(entries: pd.DataFrame) -> pd.DataFrame:
    """One row per (table, row, shot, fold) and per (table, row, shot) mean, each over the seeds."""
    keys = ["table", "row", "shot"]
    by_fold = _over_seeds(entries, [*keys, "fold"])
    by_fold["device_hours"] = entries.groupby([*keys, "fold"], sort=False)["device_hours"].sum(
        min_count=1).to_numpy()
    # Mean over the folds the table asks for, per seed; only when every fold has a result (as the paper's mean).
    per_seed = entries.groupby([*keys, "seed"], sort=False)
    seed_means = per_seed.first().reset_index()
    seed_means["reproduced"] = _complete_mean(per_seed["reproduced"]).to_numpy()
    seed_means["recorded"] = _complete_mean(per_seed["recorded"]).to_numpy()
    seed_means["not_reproduced"] = per_seed["not_reproduced"].any().to_numpy()
    means = _over_seeds(seed_means, keys)
    means["fold"] = "mean"
    means["cell_id"] = ""
    means[["device_hours", "device"]] = np.nan  # a mean is no cell: its cost is in the fold entries
    frame = pd.concat([by_fold.drop(columns=["seed"]), means.drop(columns=["seed"])], ignore_index=True)
    frame["not_reproduced"] = frame["not_reproduced"].astype(bool)
    return frame


def _beside_the_paper(frame: pd.DataFrame, paper: pd.DataFrame, tables: Mapping[str, Mapping[str, Any]],
                      names: list[str], n_folds: pd.Series, tolerance: float) -> pd.DataFrame:
    """The paper's values, the differences, the flags and the gains over the reference rows, in the tables' order."""
    frame = frame.merge(paper, on=["table", "row", "shot", "fold"], how="left")
    frame = frame.rename(columns={"value": "paper", "delta": "paper_printed_gain"})
    frame["delta"] = frame["reproduced"] - frame["paper"]
    columns_kind = pd.Series({n: tables[n]["columns"] for n in names})
    full_folds = pd.Series({n: len(tables[n]["folds"]) for n in names})
    frame["shown"] = (frame["fold"] == "mean") | (frame["table"].map(columns_kind) == "folds+mean")
    frame["comparable"] = (frame["fold"] != "mean") | (frame["table"].map(n_folds) == frame["table"].map(full_folds))
    frame["within"] = frame["comparable"] & (frame["delta"].abs() <= tolerance + 1e-9)

    # Gain over the reference row (the paper's number in parentheses).
    ref = frame[["table", "row", "shot", "fold", "reproduced", "paper"]].rename(
        columns={"row": "delta_to", "reproduced": "ref_reproduced", "paper": "ref_paper"})
    frame = frame.merge(ref, on=["table", "delta_to", "shot", "fold"], how="left")
    frame["gain"] = frame["reproduced"] - frame["ref_reproduced"]
    frame["paper_gain"] = frame["paper_printed_gain"].fillna(frame["paper"] - frame["ref_paper"])
    table_order = {n: i for i, n in enumerate(names)}
    frame["fold_order"] = frame["fold"].map({f: i for i, f in enumerate(PAPER_FOLDS)})
    frame = frame.sort_values(["table", "order", "shot", "fold_order"],
                              key=lambda s: s.map(table_order) if s.name == "table" else s)
    return frame.drop(columns=["fold_order", "ref_reproduced", "ref_paper"]).reset_index(drop=True)


def compare(tables: Mapping[str, Mapping[str, Any]], results: pd.DataFrame, paper: pd.DataFrame,
            names: Iterable[str] | None = None, shots: Sequence[int] | None = None,
            folds: Sequence[int] | None = None, tolerance: float = 1.0,
            seeds: Sequence[int] = (DEFAULT_SEED,),
            reevaluation_tolerance: float = REEVALUATION_TOLERANCE) -> pd.DataFrame:
    """Long frame, one row per (table, row, shot, fold-or-'mean'): reproduced, paper, delta, gains, flags.

    With several ``seeds`` a fold's value is the mean over its seeds and ``reproduced_std`` their sample std; a
    mean's std is the std over seeds of each seed's fold mean. ``cell_id`` lists the cells behind a fold value.
    ``shown`` says whether the paper's layout displays the value (folds only in ``folds+mean`` tables);
    ``comparable`` is False for a mean over a restricted fold set (it is not the paper's 4-fold mean);
    ``within`` = comparable and |reproduced - paper| <= tolerance. ``recorded`` is what a results bundle recorded
    for imported cells (NaN otherwise), ``not_reproduced`` whether any cell behind the value re-evaluated here
    differs from it by more than ``reevaluation_tolerance``.
    """
    tables = tables_of(tables)
    names = list(tables) if names is None else list(names)
    unknown = [n for n in names if n not in tables]
    if unknown:
        raise TablesError(f"unknown table(s) {unknown}; tables.yaml has {list(tables)}")
    entries = _entries(tables, names, shots, folds, seeds)
    _attach_results(entries, results, reevaluation_tolerance)
    n_folds = entries.groupby("table")["fold"].nunique()
    return _beside_the_paper(_fold_and_mean_values(entries), paper, tables, names, n_folds, tolerance)


def summarise(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per table: values shown, with a result (``reproduced``), compared with the paper (``compared``: a result
    and a paper value over the same folds), within tolerance, missing, mean/max |delta|, gain signs agreeing (over
    compared means only)."""
    shown = frame[frame["shown"]].copy()
    shown["has"] = shown["reproduced"].notna()
    shown["counted"] = shown["has"] & shown["comparable"] & shown["paper"].notna()
    shown["absdelta"] = shown["delta"].abs().where(shown["counted"])
    with_gain = (shown["has"] & shown["gain"].notna() & shown["paper_gain"].notna() & (shown["fold"] == "mean")
                 & shown["comparable"])
    shown["gain_counted"] = with_gain
    shown["gain_agrees"] = with_gain & (np.sign(shown["gain"]) == np.sign(shown["paper_gain"]))
    summary = shown.groupby("table", sort=False).agg(
        shown=("shown", "size"), reproduced=("has", "sum"), compared=("counted", "sum"),
        within=("within", "sum"), mean_abs_delta=("absdelta", "mean"), max_abs_delta=("absdelta", "max"),
        gains=("gain_counted", "sum"), gains_same_sign=("gain_agrees", "sum"),
        recorded=("recorded", "count"), not_reproduced=("not_reproduced", "sum"),
        reevaluation_tolerance=("reevaluation_tolerance", "first"))
    summary["missing"] = summary["shown"] - summary["reproduced"]
    summary["tolerance"] = tolerance
    # Each cell once per table (a cell appears in one fold entry per table; shared cells count in every table).
    cells = frame[frame["cell_id"] != ""].drop_duplicates(["table", "cell_id"])
    cost = cells.groupby("table", sort=False).agg(
        device_hours=("device_hours", lambda h: h.sum(min_count=1)),
        devices=("device", lambda d: ", ".join(sorted({str(x).split(":")[0] for x in d.dropna()}))))
    summary = summary.join(cost)
    return summary.reset_index()


__all__ = ["PAPER_FOLDS", "REEVALUATION_TOLERANCE", "TablesError", "compare", "read_paper", "summarise"]
