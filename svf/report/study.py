"""The small-scale study of the paper's claims: row means with 95% intervals over training seeds, differences to
each table's reference row, and a verdict per claim (agrees, disagrees, cannot tell).

Estimator. A row's value is, as in the paper's Mean column, the mean over the (fixed) folds of each fold's mean over
seeds. The folds are strata, not a sample: the interval covers the training-seed variation (initialisation, data
order, augmentation; the test episodes of a fold are fixed). With x[f, s] the mIoU of fold f and seed s, n_f seeds in
fold f and F folds:

    estimate = mean_f mean_s x[f, s]
    variance = (1 / F^2) sum_f s2 / n_f,   s2 = pooled within-fold variance, df = sum_f (n_f - 1)
    interval = estimate +- t(0.975, df) * sqrt(variance)

A difference to the reference row uses the same estimator on d[f, s] = x_row[f, s] - x_ref[f, s]: the same fold and
seed (same data order and head initialisation) are paired, which removes the fold and much of the seed effect. With
one seed per fold (df = 0) there is no interval and every claim reads "cannot tell".

Claims: every non-reference row of a table against its reference (``study.references`` in the config: frozen for
Tables 4-6, S for Tables 7-8), with the sign the paper's means give. Verdict: ``agrees`` when the interval of the
difference excludes 0 on the paper's side, ``disagrees`` when it excludes 0 on the other side, ``cannot tell``
otherwise (or when the paper prints no difference).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..pipeline.cells import DEFAULT_SEED, cell_id
from ..pipeline.tables import table_entries, tables_of
from . import atomic_write, atomic_write_text

AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"
DEFAULT_REFERENCES = {"table4": "frozen", "table5": "frozen", "table6": "frozen", "table7": "svf", "table8": "svf"}
LEVEL = 0.95


class StudyError(ValueError):
    """A study input is missing or inconsistent; the message names what."""


def stratified_interval(values: pd.DataFrame, level: float = LEVEL) -> dict[str, float]:
    """Estimate and interval of the mean over folds of per-fold means, from a frame with columns fold, value."""
    from scipy import stats

    values = values.dropna(subset=["value"])
    if values.empty:
        return {"estimate": math.nan, "half_width": math.nan, "low": math.nan, "high": math.nan, "df": 0, "n": 0}
    groups = values.groupby("fold")["value"]
    means, counts = groups.mean(), groups.count()
    df = int((counts - 1).sum())
    estimate = float(means.mean())
    if df == 0:
        half = math.nan
    else:
        pooled = float(((values["value"] - values["fold"].map(means)) ** 2).sum() / df)
        se = math.sqrt(pooled * float((1.0 / counts).sum())) / len(means)
        half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {"estimate": estimate, "half_width": half, "low": estimate - half, "high": estimate + half, "df": df,
            "n": int(counts.sum())}


def verdict(low: float, high: float, paper_difference: float) -> str:
    """agrees / disagrees / cannot tell for an interval [low, high] of (row - reference) and the paper's sign."""
    if any(map(math.isnan, (low, high, paper_difference))) or paper_difference == 0:
        return CANNOT_TELL
    if low > 0 or high < 0:
        return AGREES if (low > 0) == (paper_difference > 0) else DISAGREES
    return CANNOT_TELL


def display_labels(table: Mapping[str, Any]) -> dict[str, str]:
    """A unique readable label per row: the row's label, with its group when labels repeat ("+SVF 2, 3, 4" beside
    "+part fine-tune 2, 3, 4"), and its id when even that repeats (Table 6's conv kinds)."""
    rows = table["rows"]
    labels = {r["id"]: r["label"] for r in rows}
    if len(set(labels.values())) < len(rows):
        labels = {r["id"]: f"{r['group']} {r['label']}" for r in rows}
    counts = pd.Series(list(labels.values())).value_counts()
    return {k: (f"{v} [{k}]" if counts[v] > 1 else v) for k, v in labels.items()}


def _per_seed(tables, name: str, results: pd.DataFrame, seeds, folds) -> pd.DataFrame:
    """One row per (row, fold, seed) of a table's 1-shot cells with its mIoU (NaN when not run)."""
    miou = results.set_index("cell_id")["miou"] if len(results) else pd.Series(dtype=float)
    labels = display_labels(tables[name])
    records = [{"row": row["id"], "label": labels[row["id"]], "shot": shot, "fold": fold, "seed": cell["seed"],
                "value": float(miou.get(cell_id(cell), math.nan))}
               for row, shot, fold, cell in table_entries(tables[name], folds=folds, seeds=seeds)]
    return pd.DataFrame.from_records(records)


def study_frame(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, names: Sequence[str],
                seeds: Sequence[int] = (DEFAULT_SEED,), folds: Sequence[int] | None = None,
                references: Mapping[str, str] | None = None, level: float = LEVEL) -> pd.DataFrame:
    """Per (table, row): estimate and interval, paper mean, difference to the reference row with its interval,
    the paper's difference and the verdict."""
    tables = tables_of(tables)
    references = {**DEFAULT_REFERENCES, **(references or {})}
    paper_means = paper[paper["fold"] == "mean"].set_index(["table", "row", "shot"])["value"]
    out = []
    for name in names:
        if name not in tables:
            raise StudyError(f"unknown table {name!r}; tables.yaml has {list(tables)}")
        ref = references.get(name)
        row_ids = [r["id"] for r in tables[name]["rows"]]
        if ref not in row_ids:
            raise StudyError(f"{name}: reference row {ref!r} is not one of its rows {row_ids}")
        per_seed = _per_seed(tables, name, results, seeds, folds)
        ref_values = per_seed[per_seed["row"] == ref].set_index(["shot", "fold", "seed"])["value"]
        for (row, shot), d in per_seed.groupby(["row", "shot"], sort=False):
            est = stratified_interval(d, level)
            paper_value = paper_means.get((name, row, shot), math.nan)
            paper_ref = paper_means.get((name, ref, shot), math.nan)
            record = {"table": name, "row": row, "label": d["label"].iloc[0], "shot": shot, "reference": ref,
                      "mean": est["estimate"], "low": est["low"], "high": est["high"], "df": est["df"],
                      "n": est["n"], "paper": paper_value}
            if row == ref:
                record.update(diff=math.nan, diff_low=math.nan, diff_high=math.nan, paper_diff=math.nan,
                              verdict="")
            else:
                paired = d.set_index(["shot", "fold", "seed"])["value"] - ref_values
                diff = stratified_interval(paired.rename("value").reset_index(), level)
                paper_diff = paper_value - paper_ref
                record.update(diff=diff["estimate"], diff_low=diff["low"], diff_high=diff["high"],
                              paper_diff=paper_diff, verdict=verdict(diff["low"], diff["high"], paper_diff))
            out.append(record)
    return pd.DataFrame.from_records(out)


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    if math.isnan(mean):
        return "—"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    if math.isnan(low):
        return fmt.format(mean)
    return f"{fmt.format(mean)} [{low:.2f}, {high:.2f}]"


def claim_text(label: str, ref_label: str, paper_diff: float) -> str:
    sign = ">" if paper_diff > 0 else "<" if paper_diff < 0 else "="
    return f"{label} {sign} {ref_label}"


def summary_markdown(frame: pd.DataFrame, seeds: Sequence[int], folds_used: Sequence[int], demo: bool) -> str:
    counts = frame[frame["verdict"] != ""]["verdict"].value_counts()
    lines = ["## Study of the paper's claims" + (" (demo scale — not comparable to the paper)" if demo else ""), "",
             f"Seeds {', '.join(map(str, seeds))}; folds {', '.join(map(str, folds_used))}. Each value: mean over folds "
             f"of the mean over seeds, [95% interval over training seeds]; a difference pairs the same fold and "
             f"seed of the row and its reference (svf/report/study.py). Verdict: the interval of the difference "
             f"excludes 0 on the paper's side (agrees), on the other side (disagrees), or contains 0 (cannot tell).",
             "", f"Claims: {counts.get(AGREES, 0)} agree, {counts.get(DISAGREES, 0)} disagree, "
                 f"{counts.get(CANNOT_TELL, 0)} cannot tell.", ""]
    for name, t in frame.groupby("table", sort=False):
        ref = t["reference"].iloc[0]
        ref_label = t.loc[t["row"] == ref, "label"].iloc[0]
        lines += [f"### {name} (reference: {ref_label})", "",
                  "| Row | Ours | Paper | Ours − ref | Paper − ref | Claim | Verdict |",
                  "|:--|--:|--:|--:|--:|:--|:--|"]
        for r in t.itertuples():
            claim = "" if r.row == ref or math.isnan(r.paper_diff) else claim_text(r.label, ref_label, r.paper_diff)
            paper = "—" if math.isnan(r.paper) else f"{r.paper:.2f}"
            paper_diff = "" if math.isnan(r.paper_diff) else f"{r.paper_diff:+.2f}"
            lines.append(f"| {r.label} | {_interval(r.mean, r.low, r.high)} | {paper} | "
                         f"{'' if r.row == ref else _interval(r.diff, r.diff_low, r.diff_high, signed=True)} | "
                         f"{paper_diff} | {claim} | {r.verdict} |")
        lines.append("")
    return "\n".join(lines)


def plot_study_table(frame: pd.DataFrame, name: str, demo: bool):
    """Left: each row's mean with its 95% interval (ours) and the paper's mean (hollow, own axis: the scales
    differ). Right: the difference to the reference row, ours with its interval beside the paper's, on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = frame[frame["table"] == name].reset_index(drop=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 1.5 * len(t) + 3), 3.8))
    x = np.arange(len(t))
    err = np.nan_to_num(np.vstack([t["mean"] - t["low"], t["high"] - t["mean"]]))
    left.errorbar(x - 0.1, t["mean"], yerr=err, fmt="o", capsize=4, label="ours, 95% interval")
    paper_axis = left.twinx()
    paper_axis.plot(x + 0.1, t["paper"], "D", mfc="none", color="tab:red", label="paper")
    paper_axis.set_ylabel("paper mIoU (%)", color="tab:red")
    left.set(ylabel="our mIoU (%)", title="mean over folds and seeds")
    others = t[t["row"] != t["reference"]]
    xo = np.arange(len(others))
    derr = np.nan_to_num(np.vstack([others["diff"] - others["diff_low"], others["diff_high"] - others["diff"]]))
    right.errorbar(xo - 0.1, others["diff"], yerr=derr, fmt="o", capsize=4, label="ours, 95% interval")
    right.plot(xo + 0.1, others["paper_diff"], "D", mfc="none", color="tab:red", label="paper")
    right.axhline(0.0, color="black", linewidth=0.7)
    ref_label = t.loc[t["row"] == t["reference"], "label"].iloc[0]
    right.set(ylabel="mIoU difference (points)", title=f"difference to {ref_label}")
    for ax, d, pos in ((left, t, x), (right, others, xo)):
        ax.set_xticks(pos, d["label"], rotation=20, ha="right", fontsize=8)
    right.legend(fontsize=7)
    fig.suptitle(f"{name}: study of the paper's claims" + (" (demo scale)" if demo else ""), fontsize=10)
    fig.tight_layout()
    return fig


def write_study(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, out_dir: str | Path,
                figures_dir: str | Path, names: Iterable[str], seeds: Sequence[int] = (DEFAULT_SEED,),
                folds: Sequence[int] | None = None, references: Mapping[str, str] | None = None,
                demo: bool = False) -> list[Path]:
    """Write ``<out_dir>/study.{csv,md}`` and ``<figures_dir>/study_<table>.png``; returns the paths."""
    from .figures import save_figure

    names = list(names)
    frame = study_frame(tables, results, paper, names, seeds=seeds, folds=folds, references=references)
    folds_used = sorted({f for n in names for f in tables_of(tables)[n]["folds"] if folds is None or f in folds})
    out_dir, figures_dir = Path(out_dir), Path(figures_dir)
    written = [atomic_write(out_dir / "study.csv", lambda tmp: frame.round(4).to_csv(tmp, index=False)),
               atomic_write_text(out_dir / "study.md", summary_markdown(frame, seeds, folds_used, demo))]
    for name in names:
        written.append(save_figure(plot_study_table(frame, name, demo), figures_dir / f"study_{name}.png"))
    return written


__all__ = ["AGREES", "CANNOT_TELL", "DISAGREES", "StudyError", "stratified_interval", "study_frame", "verdict",
           "write_study"]
