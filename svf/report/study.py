"""The study of the paper's claims (docs/study.md): every distinct claim of Tables 4-8 tested on paired runs, with
the analysis fixed in advance; the statistics are in svf/report/claims.py.

Inputs: the collected cells of the study (any seeds; a claim pairs the runs of its two rows with the same fold and
seed), the tables (which rows exist, their cells), the paper's numbers (each claim's direction and size) and,
optionally, the probe results of svf/engine/tasks/probe.py (the paper's mechanism). Outputs: ``study.md`` (the verdicts,
the rows with their failure rates, the probe), ``study.csv`` (one row per claim), ``study_rows.csv`` and the
figures ``study_claims.png`` (a forest plot), ``study_rows.png`` and ``study_probe.png``.

A row's value is, as the paper's Mean column, the mean over folds of each fold's mean over seeds, with a 95%
interval over training seeds (claims.stratified_mean). A run *fails* when its test mIoU is no better than the
all-foreground predictor's on the same episodes (metrics.json ``all_foreground_miou``).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ..pipeline.paths import (STUDY_CLAIMS_PNG, STUDY_CSV, STUDY_MD, STUDY_PROBE_CSV, STUDY_PROBE_PNG, STUDY_ROWS_CSV,
                              STUDY_ROWS_PNG)
from ..pipeline.tables import table_entries, tables_of
from ..policy import parse_policy
from . import atomic_write, atomic_write_text
from .claims import (AGREES, ALPHA, CANNOT_TELL, DISAGREES, EQUIVALENCE, EQUIVALENCE_THRESHOLD, EQUIVALENT,
                     HALF_WIDTH_TARGET, NOT_EQUIVALENT, Claim, decide, stratified_mean)

DEFAULT_REFERENCES = {"table4": "frozen", "table5": "frozen", "table6": "frozen", "table7": "svf", "table8": "svf"}
# The paper's central ordering (SVF > frozen > fine-tuning; S > U, V): claims named primary in docs/study.md.
DEFAULT_PRIMARY = ("svf vs frozen", "full vs frozen", "svf vs full", "svf-U vs svf", "svf-V vs svf")
VERDICT_ORDER = (AGREES, EQUIVALENT, DISAGREES, NOT_EQUIVALENT, CANNOT_TELL)


class StudyError(ValueError):
    """A study input is missing or inconsistent; the message names what."""


def study_rows(tables: Mapping[str, Any], names: Sequence[str]) -> dict[str, dict]:
    """Row id -> {"label" (what trains, in words), "cell" (the row's cell parameters), "tables"} over the named
    tables; a row id used by several tables must name the same cell in each (Table 4's "svf" is Table 5's)."""
    tables = tables_of(tables)
    rows: dict[str, dict] = {}
    for name in names:
        if name not in tables:
            raise StudyError(f"unknown table {name!r}; tables.yaml has {list(tables)}")
        for row, _, _, cell in table_entries(tables[name], folds=[tables[name]["folds"][0]]):
            params = {k: v for k, v in cell.items() if k not in ("fold", "seed")}
            if row["id"] in rows and rows[row["id"]]["cell"] != params:
                raise StudyError(f"row {row['id']!r} names different cells in {rows[row['id']]['tables']} and "
                                 f"{name}: {rows[row['id']]['cell']} vs {params}")
            entry = rows.setdefault(row["id"], {"label": parse_policy(cell["policy"]).description, "cell": params,
                                                "tables": []})
            if name not in entry["tables"]:
                entry["tables"].append(name)
    return rows


def runs_frame(rows: Mapping[str, dict], results: pd.DataFrame, folds: Sequence[int] | None = None) -> pd.DataFrame:
    """One line per (row, fold, seed) run found in ``results``: value (mIoU) and the all-foreground floor."""
    if results.empty:
        return pd.DataFrame(columns=["row", "fold", "seed", "value", "floor"])
    keyed = {tuple(sorted(r["cell"].items())): row_id for row_id, r in rows.items()}
    params = [k for k in next(iter(rows.values()))["cell"]]
    records = []
    for r in results.to_dict("records"):
        row_id = keyed.get(tuple(sorted((k, _plain(r[k])) for k in params)))
        if row_id is None or (folds is not None and int(r["fold"]) not in folds):
            continue
        records.append({"row": row_id, "fold": int(r["fold"]), "seed": int(r["seed"]), "value": float(r["miou"]),
                        "floor": float(r.get("all_foreground_miou", math.nan))})
    return pd.DataFrame.from_records(records, columns=["row", "fold", "seed", "value", "floor"])


def _plain(value):
    """A results.csv value as the cell dicts hold it (numpy ints -> int)."""
    return int(value) if isinstance(value, (np.integer,)) else value


def claims_of(rows: Mapping[str, dict], tables: Mapping[str, Any], names: Sequence[str], paper: pd.DataFrame,
              references: Mapping[str, str] | None = None, primary: Iterable[str] = DEFAULT_PRIMARY) -> list[Claim]:
    """The distinct claims: every row of a table against the table's reference (once, however many tables print
    it), plus the ``primary`` pairs ("row vs reference") the tables do not print; each with the paper's
    difference of Mean values (1-shot)."""
    references = {**DEFAULT_REFERENCES, **(references or {})}
    means = paper[(paper["fold"] == "mean") & (paper["shot"] == 1)].set_index(["table", "row"])["value"]
    primary = list(primary)
    pairs: dict[tuple[str, str], list[str]] = {}
    for name in names:
        ref = references.get(name)
        table_rows = [r["id"] for r in tables_of(tables)[name]["rows"]]
        if ref not in table_rows:
            raise StudyError(f"{name}: reference row {ref!r} is not one of its rows {table_rows}")
        for row in table_rows:
            if row != ref:
                pairs.setdefault((row, ref), []).append(name)
    for key in primary:
        row, _, ref = key.partition(" vs ")
        if row not in rows or ref not in rows:
            raise StudyError(f"primary claim {key!r}: rows must be among {sorted(rows)}")
        pairs.setdefault((row, ref), [])

    def paper_value(row: str) -> float:
        for name in rows[row]["tables"]:
            if (name, row) in means.index:
                return float(means[(name, row)])
        return math.nan

    return [Claim(row, ref, paper_value(row) - paper_value(ref), primary=f"{row} vs {ref}" in primary,
                  tables=tuple(where)) for (row, ref), where in pairs.items()]


def paired_differences(runs: pd.DataFrame, row: str, reference: str) -> pd.DataFrame:
    """d = row - reference on the (fold, seed) pairs both rows ran."""
    a = runs[runs["row"] == row].set_index(["fold", "seed"])["value"]
    b = runs[runs["row"] == reference].set_index(["fold", "seed"])["value"]
    d = (a - b).dropna()
    return d.rename("value").reset_index()


def rows_summary(rows: Mapping[str, dict], runs: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Per row: runs, mean over folds of fold means with its 95% interval, the failure rate, the paper's mean."""
    means = paper[(paper["fold"] == "mean") & (paper["shot"] == 1)].set_index(["table", "row"])["value"]
    out = []
    for row_id, row in rows.items():
        r = runs[runs["row"] == row_id]
        est = stratified_mean(r[["fold", "value"]])
        failed = int((r["value"] <= r["floor"]).sum())
        paper_value = next((float(means[(t, row_id)]) for t in row["tables"] if (t, row_id) in means.index),
                           math.nan)
        out.append({"row": row_id, "label": row["label"], "tables": ", ".join(row["tables"]), "runs": len(r),
                    "seeds": r["seed"].nunique(), "mean": est["estimate"], "low": est["low"], "high": est["high"],
                    "failed": failed, "failure_rate": failed / len(r) if len(r) else math.nan,
                    "floor": float(r["floor"].mean()) if len(r) else math.nan, "paper": paper_value})
    return pd.DataFrame.from_records(out)


def study_frames(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, names: Sequence[str],
                 folds: Sequence[int] | None = None, references: Mapping[str, str] | None = None,
                 primary: Iterable[str] = DEFAULT_PRIMARY, margin: float = EQUIVALENCE_THRESHOLD,
                 alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(claims, rows): the verdict of every distinct claim and the summary of every row."""
    rows = study_rows(tables, names)
    runs = runs_frame(rows, results, folds)
    claims = claims_of(rows, tables, names, paper, references, primary)
    diffs = {c.key: paired_differences(runs, c.row, c.reference) for c in claims}
    decided = decide(claims, diffs, margin=margin, alpha=alpha)
    decided["label"] = [rows[r]["label"] for r in decided["row"]]
    decided["reference_label"] = [rows[r]["label"] for r in decided["reference"]]
    decided["clustered_p"] = [seed_clustered_p(diffs[k]) for k in decided["claim"]]
    return decided, rows_summary(rows, runs, paper)


def seed_clustered_p(diffs: pd.DataFrame) -> float:
    """Sensitivity check of the plan: the two-sided p of d = 0 when each seed's mean difference over folds is one
    observation (the folds of one seed share its world and initialisation stream); NaN below 2 seeds."""
    from scipy import stats

    per_seed = diffs.groupby("seed")["value"].mean()
    if len(per_seed) < 2 or float(per_seed.std()) == 0.0:
        return math.nan
    return float(stats.ttest_1samp(per_seed, 0.0).pvalue)


# --- the probe (svf/engine/tasks/probe.py) ------------------------------------------------------------------------


def probe_summary(probes: pd.DataFrame, feature: str = "mid") -> pd.DataFrame:
    """Per row: probe mIoU (``feature``) before and after base training and the change, each the mean over folds of
    fold means with its 95% interval over seeds."""
    out = []
    for row, p in probes.groupby("row", sort=False):
        record = {"row": row, "runs": len(p)}
        for what in ("before", "after", "change"):
            est = stratified_mean(p[["fold", f"{what}_{feature}"]].rename(columns={f"{what}_{feature}": "value"}))
            record.update({what: est["estimate"], f"{what}_low": est["low"], f"{what}_high": est["high"]})
        out.append(record)
    return pd.DataFrame.from_records(out)


def read_probes(paths: Iterable[str | Path], rows: Mapping[str, dict]) -> pd.DataFrame:
    """The probe JSON files (svf probe) as one frame: row, fold, seed, before_<f>, after_<f>, change_<f>."""
    import json

    keyed = {tuple(sorted(r["cell"].items())): row_id for row_id, r in rows.items()}
    records = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        cell = data["cell"]
        params = {k: cell[k] for k in next(iter(rows.values()))["cell"]}
        row = keyed.get(tuple(sorted(params.items())), cell["policy"])
        record = {"row": row, "fold": int(cell["fold"]), "seed": int(cell["seed"])}
        for what in ("before", "after"):
            record.update({f"{what}_{k}": v for k, v in data[what].items() if isinstance(v, float)})
        record.update({f"change_{k}": v for k, v in data["change"].items()})
        records.append(record)
    return pd.DataFrame.from_records(records)


# --- writing ------------------------------------------------------------------------------------------------------


def _fmt(value: float, signed: bool = False, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(est: float, low: float, high: float, signed: bool = False) -> str:
    if math.isnan(low):
        return _fmt(est, signed)
    return f"{_fmt(est, signed)} [{_fmt(low, signed)}, {_fmt(high, signed)}]"


def _p(value: float) -> str:
    return "—" if math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def claim_sentence(r) -> str:
    """The paper's statement of a claim, in words."""
    if r.kind == EQUIVALENCE:
        return f"{r.label} ≈ {r.reference_label} (paper {r.paper_diff:+.2f})"
    sign = ">" if r.paper_diff > 0 else "<"
    return f"{r.label} {sign} {r.reference_label} (paper {r.paper_diff:+.2f})"


def claims_table(claims: pd.DataFrame) -> list[str]:
    lines = ["| Claim (paper's difference) | Ours: row − reference [95% CI] | n (folds) | Half-width | "
             "Smallest detectable | p (Holm) | Paper's value in our CI | Verdict |",
             "|:--|--:|--:|--:|--:|--:|:--:|:--|"]
    for r in claims.itertuples():
        lines.append(f"| {claim_sentence(r)} | {_interval(r.estimate, r.low, r.high, signed=True)} | {r.n} "
                     f"({r.folds}) | {_fmt(r.half_width)} | {_fmt(r.detectable)} | {_p(r.p_adjusted)} | "
                     f"{'yes' if r.paper_in_interval else 'no'} | **{r.verdict}** |")
    return lines


def power_line(primary: pd.DataFrame) -> str:
    """How many primary claims meet the half-width target, and the pairs each needs (docs/study.md, "Power")."""
    met = int((primary["half_width"] <= HALF_WIDTH_TARGET).sum())
    needs = "; ".join(f"{r.claim}: SD {_fmt(r.sd)}, {_fmt(r.pairs_for_target, digits=0)} pairs (has {r.n})"
                      for r in primary.itertuples())
    sure = "; ".join(f"{r.claim}: {_fmt(r.pairs_for_assurance, digits=0)}" for r in primary.itertuples())
    return (f"Power: {met} of {len(primary)} primary claims have a 95% half-width ≤ {HALF_WIDTH_TARGET:g} mIoU. At "
            f"each one's measured within-fold SD, the pairs the plan's rule needs for it: {needs}. Pairs that meet "
            f"the target in 80% of designs drawn by resampling this run's seeds: {sure}.")


def summary_markdown(claims: pd.DataFrame, rows: pd.DataFrame, probe: pd.DataFrame | None, demo: bool,
                     margin: float = EQUIVALENCE_THRESHOLD, alpha: float = ALPHA, tables: str = "Tables 4-8") -> str:
    counts = claims["verdict"].value_counts()
    primary, secondary = claims[claims["primary"]], claims[~claims["primary"]]
    scale = " (demo scale — not comparable to the paper's numbers)" if demo else ""
    seeds = sorted(set(rows["seeds"])) if len(rows) else []
    lines = [f"## Study of the paper's claims{scale}", "",
             f"{len(claims)} distinct claims of {tables} ({len(primary)} primary), tested as fixed in advance in "
             f"docs/study.md: each claim pairs the two rows' runs of the same fold and seed; the estimate is the mean "
             f"over folds of the per-fold mean difference (OLS with fold effects: pooled within-fold variance); a "
             f"direction claim tests d = 0, an equivalence claim (paper |difference| < {EQUIVALENCE_THRESHOLD:g}) "
             f"tests |d| ≥ {margin:g} mIoU with two one-sided tests; Holm's correction over all {len(claims)} "
             f"claims at α = {alpha:g}. 'Smallest detectable': the |difference| found with 80% power at Holm's "
             f"strictest level (α/{len(claims)}).", "",
             "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICT_ORDER if counts.get(v, 0)) + ".",
             "", "### Primary claims", "", *claims_table(primary), "", "### Secondary claims", "",
             *claims_table(secondary), "",
             power_line(primary), "",
             "Sensitivity (plan, docs/study.md): with each seed's mean difference over folds as one observation "
             "(seeds as the unit), the primary claims' two-sided p are " + ", ".join(
                 f"{r.claim}: {_p(r.clustered_p)}" for r in primary.itertuples()) + ".", "",
             "### Rows", "",
             f"Runs per row: {', '.join(map(str, seeds))} seeds per fold. Mean over folds of the per-fold mean, "
             f"[95% CI over seeds]; failed = runs whose test mIoU is no better than the all-foreground predictor "
             f"on the same episodes (mean floor {_fmt(float(rows['floor'].mean()))}).", "",
             "| Row | Tables | Runs | mIoU [95% CI] | Failed | Paper |", "|:--|:--|--:|--:|--:|--:|"]
    for r in rows.itertuples():
        lines.append(f"| {r.label} (`{r.row}`) | {r.tables} | {r.runs} | {_interval(r.mean, r.low, r.high)} | "
                     f"{r.failed} ({_fmt(100 * r.failure_rate, digits=0)}%) | {_fmt(r.paper)} |")
    if probe is not None and len(probe):
        lines += ["", "### The paper's mechanism: the novel classes' linear probe (svf/engine/tasks/probe.py)", "",
                  "Linear segmentation probe of the fold's novel classes on the backbone's layer2+3 features "
                  "(mIoU over the novel classes, fitted on held-out images, scored on test images), on the backbone "
                  "a cell starts from (before) and after base training, on seeds the rows above do not use. Mean "
                  "over folds [95% CI over seeds].", "",
                  "| Row | Runs | Before | After | After − before |", "|:--|--:|--:|--:|--:|"]
        for r in probe.itertuples():
            lines.append(f"| `{r.row}` | {r.runs} | {_interval(r.before, r.before_low, r.before_high)} | "
                         f"{_interval(r.after, r.after_low, r.after_high)} | "
                         f"{_interval(r.change, r.change_low, r.change_high, signed=True)} |")
    return "\n".join(lines) + "\n"


VERDICT_COLOURS = {AGREES: "#009E73", EQUIVALENT: "#009E73", DISAGREES: "#D55E00", NOT_EQUIVALENT: "#D55E00",
                   CANNOT_TELL: "#7f7f7f"}  # Okabe-Ito: readable with colour-blindness


@contextmanager
def _figure(figsize: tuple[float, float], title: str, demo: bool, **title_style) -> Iterator:
    """The axes of a new figure to draw on; on leaving, its title (marked at demo scale) and a tight layout. pyplot
    as svf/report/figures.py sets it up (Agg backend, the figures' font sizes), imported only when a figure is
    drawn."""
    from .figures import plt

    fig, ax = plt.subplots(figsize=figsize)
    yield ax
    ax.set_title(title + (" — demo scale" if demo else ""), fontsize=9, **title_style)
    fig.tight_layout()


def plot_claims(claims: pd.DataFrame, demo: bool):
    """Forest plot: one line per claim (primary first), our 95% interval (thick) and the family-wise interval
    (thin), the paper's difference (diamond), the equivalence margin (band) for equivalence claims."""
    from matplotlib.patches import Rectangle

    c = pd.concat([claims[claims["primary"]], claims[~claims["primary"]]]).reset_index(drop=True)
    with _figure((7.5, 0.34 * len(c) + 1.6), "Study of the paper's claims: our paired differences (thick: 95% CI; "
                 "thin: family-wise CI) and the paper's (◇)", demo, wrap=True) as ax:
        y = np.arange(len(c))[::-1]
        for yi, r in zip(y, c.itertuples()):
            colour = VERDICT_COLOURS.get(r.verdict, "black")
            if r.kind == EQUIVALENCE and not math.isnan(r.margin):
                ax.add_patch(Rectangle((-r.margin, yi - 0.4), 2 * r.margin, 0.8, color="#56B4E9", alpha=0.25, lw=0))
            ax.plot([r.fw_low, r.fw_high], [yi, yi], color=colour, lw=1)
            ax.plot([r.low, r.high], [yi, yi], color=colour, lw=3.5, solid_capstyle="butt")
            ax.plot(r.estimate, yi, "o", color=colour, ms=4)
            ax.plot(r.paper_diff, yi, "D", mfc="white", mec="black", ms=5)
        ax.axvline(0, color="black", lw=0.7)
        labels = [f"{'● ' if r.primary else ''}{r.row} − {r.reference}  ({r.verdict})" for r in c.itertuples()]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("mIoU difference, row − reference (points)")
        if len(c) and c["primary"].any() and not c["primary"].all():
            ax.axhline(y[int(c["primary"].sum()) - 1] - 0.5, color="grey", lw=0.5, ls=":")
    return ax.figure


def plot_rows(rows: pd.DataFrame, demo: bool, tables: str = "Tables 4-8"):
    """Each row's mIoU with its 95% interval (left axis) and failure rate (annotated)."""
    with _figure((7.5, 3.6), f"Rows of {tables}: mean over folds and seeds", demo) as ax:
        x = np.arange(len(rows))
        err = np.nan_to_num(np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]]))
        ax.errorbar(x, rows["mean"], yerr=err, fmt="o", color="#0072B2", capsize=3, label="ours, 95% CI")
        ax.axhline(float(rows["floor"].mean()), color="#D55E00", ls="--", lw=1, label="all-foreground predictor")
        for xi, r in zip(x, rows.itertuples()):
            if r.failed:
                ax.annotate(f"{r.failed} failed", (xi, r.low), textcoords="offset points", xytext=(0, -12),
                            ha="center", fontsize=7, color="#D55E00")
        ax.set_ylim(0, max(1.0, float(np.nanmax(rows["high"].to_numpy(float)))) * 1.1)
        ax.set_xticks(x, rows["row"], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("test mIoU (%)")
        ax.legend(fontsize=7, loc="lower left")
    return ax.figure


def plot_probe(probe: pd.DataFrame, demo: bool):
    """Probe mIoU before and after base training per row, with 95% intervals."""
    with _figure((6.0, 3.4), "Linear probe of the novel classes on the backbone's features", demo) as ax:
        x = np.arange(len(probe))
        for offset, what, colour, marker in ((-0.12, "before", "#0072B2", "o"), (0.12, "after", "#E69F00", "s")):
            mean = probe[what].to_numpy(float)
            err = np.nan_to_num(np.vstack([mean - probe[f"{what}_low"], probe[f"{what}_high"] - mean]))
            ax.errorbar(x + offset, mean, yerr=err, fmt=marker, color=colour, capsize=3,
                        label=f"{what} base training")
        ax.set_xticks(x, probe["row"], fontsize=8)
        ax.set_ylabel("novel-class probe mIoU (%)")
        ax.legend(fontsize=7)
    return ax.figure


def write_study(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, out_dir: str | Path,
                figures_dir: str | Path, names: Iterable[str], folds: Sequence[int] | None = None,
                references: Mapping[str, str] | None = None, primary: Iterable[str] = DEFAULT_PRIMARY,
                margin: float = EQUIVALENCE_THRESHOLD, probes: Iterable[str | Path] = (),
                demo: bool = False) -> list[Path]:
    """Write ``study.{md,csv}``, ``study_rows.csv`` (and ``study_probe.csv``) under ``out_dir`` and the figures
    under ``figures_dir``; returns the paths."""
    from .figures import save_figure

    names = list(names)
    label = ("Table " if len(names) == 1 else "Tables ") + ", ".join(n.removeprefix("table") for n in names)
    claims, rows = study_frames(tables, results, paper, names, folds=folds, references=references,
                                primary=primary, margin=margin)
    probe_runs = read_probes(probes, study_rows(tables, names)) if probes else pd.DataFrame()
    probe = probe_summary(probe_runs) if len(probe_runs) else None
    out_dir, figures_dir = Path(out_dir), Path(figures_dir)
    written = [atomic_write(out_dir / STUDY_CSV, lambda tmp: claims.round(5).to_csv(tmp, index=False)),
               atomic_write(out_dir / STUDY_ROWS_CSV, lambda tmp: rows.round(4).to_csv(tmp, index=False)),
               atomic_write_text(out_dir / STUDY_MD, summary_markdown(claims, rows, probe, demo, margin, tables=label)),
               save_figure(plot_claims(claims, demo), figures_dir / STUDY_CLAIMS_PNG),
               save_figure(plot_rows(rows, demo, label), figures_dir / STUDY_ROWS_PNG)]
    if probe is not None:
        written += [atomic_write(out_dir / STUDY_PROBE_CSV, lambda tmp: probe_runs.round(4).to_csv(tmp, index=False)),
                    save_figure(plot_probe(probe, demo), figures_dir / STUDY_PROBE_PNG)]
    return written


__all__ = ["DEFAULT_PRIMARY", "DEFAULT_REFERENCES", "StudyError", "claims_of", "paired_differences",
           "probe_summary", "read_probes", "rows_summary", "runs_frame", "seed_clustered_p", "study_frames",
           "study_rows", "write_study"]
