"""Render the paper's tables from results.csv: ``tableN.{csv,md,tex}`` and ``summary.md``.

The core is ``compare``: one long frame with, for every value a table shows (a fold or the mean, per row and shot),
the reproduced mIoU, the paper's number and their difference, plus the gain over the row's ``delta_to`` reference
(the paper's "(+x.xx)"). The renderers only lay that frame out as the paper does. Cells imported from a results
bundle (svf/bundle/) also carry the number the bundle recorded; a value whose re-evaluation here differs from it by
more than the re-evaluation tolerance is flagged "not reproduced from weights".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ResultsError
from ..pipeline.cells import DEFAULT_SEED, cell_id
from ..pipeline.tables import table_entries, tables_of
from . import atomic_write, atomic_write_text

DEMO_NOTE = "demo scale — not comparable to the paper"
MISSING = "—"
PAPER_FOLDS = ("0", "1", "2", "3", "mean")
NOT_REPRODUCED = "not reproduced from weights"
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
    n_folds = entries.groupby("table")["fold"].nunique()
    frame = pd.concat([by_fold.drop(columns=["seed"]), means.drop(columns=["seed"])], ignore_index=True)
    frame["not_reproduced"] = frame["not_reproduced"].astype(bool)

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


# --- layout -------------------------------------------------------------------------------------------------------

def _fmt(x: float, signed: bool = False) -> str:
    return MISSING if pd.isna(x) else (f"{x:+.2f}" if signed else f"{x:.2f}")


def _value_cell(reproduced: float, paper: float, delta: float, std: float = float("nan"), n_seeds: int = 1,
                comparable: bool = True, recorded: float = float("nan"), not_reproduced: bool = False) -> str:
    """'reproduced (paper, delta)', 'mean ± std (paper, delta)' over several seeds; a missing result shows the paper
    value only: '— (paper)'; a mean over fewer folds than the paper's shows the paper's mean without a difference:
    '43.23 (paper's 4-fold mean 60.15)'. An imported value adds the bundle's number, 'reproduced (paper, delta;
    recorded r)', and ', not reproduced from weights' when the two differ by more than the re-evaluation tolerance."""
    if pd.isna(reproduced):
        return MISSING if pd.isna(paper) else f"{MISSING} ({paper:.2f})"
    value = f"{reproduced:.2f} ± {std:.2f}" if n_seeds > 1 and pd.notna(std) else f"{reproduced:.2f}"
    if pd.isna(paper):
        comparison = "n/a"
    elif not comparable:
        comparison = f"paper's 4-fold mean {paper:.2f}"
    else:
        comparison = f"{paper:.2f}, {delta:+.2f}"
    if pd.notna(recorded):
        comparison += f"; recorded {recorded:.2f}" + (f", {NOT_REPRODUCED}" if not_reproduced else "")
    return f"{value} ({comparison})"


def _gain_cell(gain: float, paper_gain: float, comparable: bool = True) -> str:
    if not comparable:
        return f"{_fmt(gain, signed=True)} (paper's, 4 folds: {_fmt(paper_gain, signed=True)})"
    return f"{_fmt(gain, signed=True)} ({_fmt(paper_gain, signed=True)})"


def _value_columns(table: Mapping[str, Any], frame: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(shot, fold-or-'mean'/'gain', header) for the value columns of a table, in the paper's order."""
    shots = list(dict.fromkeys(frame["shot"]))
    folds = [f for f in dict.fromkeys(frame["fold"]) if f != "mean"]
    has_gain = frame["delta_to"].notna().any()
    prefix = len(shots) > 1 or table["columns"] == "folds+mean"
    columns = []
    for shot in shots:
        pre = f"{shot}-shot " if prefix else ""
        if table["columns"] == "folds+mean":
            columns += [(shot, f, f"{pre}Fold-{f}") for f in folds]
        columns.append((shot, "mean", f"{pre}Mean"))
        if has_gain:
            columns.append((shot, "gain", f"{pre}Gain"))
    return columns


def layout(table: Mapping[str, Any], frame: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body rows (strings, group shown once per block) and row groups of one table's frame."""
    frame = frame[frame["shown"]]
    value_cols = _value_columns(table, frame)
    header = [table["group_header"], table["label_header"], *table["extra_columns"], *(h for _, _, h in value_cols)]
    indexed = frame.set_index(["row", "shot", "fold"])
    body, groups, previous = [], [], None
    for row in table["rows"]:
        if row["id"] not in indexed.index.get_level_values("row"):
            continue
        cells = []
        for shot, fold, _ in value_cols:
            rec = indexed.loc[(row["id"], shot, "mean" if fold == "gain" else fold)]
            if fold == "gain":
                cells.append(_gain_cell(rec["gain"], rec["paper_gain"], bool(rec["comparable"]))
                             if pd.notna(rec["delta_to"]) else "")
            else:
                cells.append(_value_cell(rec["reproduced"], rec["paper"], rec["delta"], rec["reproduced_std"],
                                         int(rec["n_seeds"]), bool(rec["comparable"]), rec["recorded"],
                                         bool(rec["not_reproduced"])))
        group = row["group"] if row["group"] != previous else ""
        previous = row["group"]
        groups.append(row["group"])
        body.append([group, row["label"], *(row["extra"].get(c, "") for c in table["extra_columns"]), *cells])
    return header, body, groups


def footnotes(table: Mapping[str, Any], frame: pd.DataFrame, tolerance: float) -> list[str]:
    shown = frame[frame["shown"]]
    notes = ["Each value: our mIoU (paper, ours − paper), in %."]
    if shown["recorded"].notna().any():
        notes.append(_imported_sentence(shown))
    if (shown["n_seeds"] > 1).any():
        notes[0] = ("Each value: our mIoU, mean ± std over training seeds (paper, mean − paper), in %; a "
                    "mean's std is over each seed's mean of the folds.")
    if shown["reproduced"].isna().any():
        notes.append(f"{MISSING} (paper): no result yet for this cell; a mean needs a result for every fold.")
    if frame["delta_to"].notna().any():
        notes.append("Gain: this row's mean minus the mean of its reference row (the paper's gain in "
                     "parentheses).")
    if not frame["comparable"].all():
        folds = sorted(f for f in frame["fold"].unique() if f != "mean")
        notes.append(f"Only fold{'s' if len(folds) > 1 else ''} {', '.join(folds)} ran: a Mean here is the mean over "
                     f"{'these folds' if len(folds) > 1 else 'that fold'}, shown beside the paper's mean over 4 folds "
                     f"without a difference and not compared with it (nor its gain).")
    summary = summarise(frame, tolerance).iloc[0]
    notes.append(_summary_sentence(summary))
    return notes


def _imported_sentence(shown: pd.DataFrame) -> str:
    """What 'recorded' means in a table of imported cells, and how many values are flagged."""
    flagged = int(shown["not_reproduced"].sum())
    return (f"Imported from a results bundle (results_from): each value is re-evaluated here from the bundle's "
            f"trained weights; 'recorded' is the bundle's own number; '{NOT_REPRODUCED}' marks a value whose "
            f"re-evaluation differs from it by more than {shown['reevaluation_tolerance'].iloc[0]:.2f} mIoU "
            f"({flagged} of {int(shown['recorded'].notna().sum())} values).")


def _summary_sentence(s: pd.Series) -> str:
    shown, compared = int(s["shown"]), int(s["compared"])
    text = (f"{shown} values shown, {int(s['reproduced'])} with a result"
            + (f", {int(s['missing'])} without one yet" if s["missing"] else "") + "; ")
    text += (f"{compared} compared with the paper, {int(s['within'])} of them within ±{s['tolerance']:.2f} mIoU."
             if compared else "none compared with the paper (no value covers the paper's folds).")
    if s["gains"]:
        text += f" Gains with the paper's sign: {int(s['gains_same_sign'])} of {int(s['gains'])}."
    return text


def _title(table: Mapping[str, Any], demo: bool) -> str:
    return f"{table['title']} ({DEMO_NOTE})" if demo else table["title"]


# --- renderers ----------------------------------------------------------------------------------------------------

def to_markdown(table: Mapping[str, Any], frame: pd.DataFrame, tolerance: float, demo: bool) -> str:
    header, body, _ = layout(table, frame)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731 - a pipe would split the cell
    lines = [f"### {_title(table, demo)}", "", "| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join([":--"] * (2 + len(table["extra_columns"])) + ["--:"] * (len(header) - 2
                            - len(table["extra_columns"]))) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in body]
    lines += [""] + [f"- {n}" for n in footnotes(table, frame, tolerance)]
    return "\n".join(lines) + "\n"


_TEX_REPLACEMENTS = [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                     ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                     ("^", r"\textasciicircum{}"), ("†", r"$^\dagger$"), ("✓", r"\checkmark"),
                     ("×", r"$\times$"), ("±", r"$\pm$"), ("−", "--"), ("—", "---"), ("–", "--"),
                     ("Δ", r"$\Delta$")]


def tex_escape(text: str) -> str:
    """Escape LaTeX specials and map the tables' unicode (†, ✓, ×, —) to LaTeX."""
    out = []
    for ch in str(text):
        out.append(next((rep for src, rep in _TEX_REPLACEMENTS if src == ch), ch))
    return "".join(out)


def _tex_value(cell: str) -> str:
    """'61.20 (60.15, +1.05)' -> '61.20 {\\scriptsize (60.15, +1.05)}' so the comparison stays readable."""
    value, sep, rest = cell.partition(" (")
    return tex_escape(value) + (r" {\scriptsize (" + tex_escape(rest) + "}" if sep else "")


def to_latex(table: Mapping[str, Any], frame: pd.DataFrame, tolerance: float, demo: bool, name: str) -> str:
    header, body, groups = layout(table, frame)  # a rule between groups (backbones, methods), as the paper
    n_text = 2 + len(table["extra_columns"])
    value_cols = _value_columns(table, frame[frame["shown"]])
    shots = list(dict.fromkeys(s for s, _, _ in value_cols))
    per_shot = len(value_cols) // max(len(shots), 1)
    spec = "l" * n_text + "".join("|" + "c" * per_shot for _ in shots)
    lines = ["% Generated by `svf tables`; do not edit. Needs \\usepackage{booktabs,amssymb}.",
             r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(_title(table, demo))}}}",
             rf"\label{{tab:{name}}}", r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if len(shots) > 1 or table["columns"] == "folds+mean":
        lines.append(" & " * (n_text - 1) + " & " + " & ".join(
            rf"\multicolumn{{{per_shot}}}{{c}}{{{s}-shot}}" for s in shots) + r" \\")
        short = [h.split(" ", 1)[1] if h[0].isdigit() else h for h in header[n_text:]]
    else:
        short = header[n_text:]
    lines.append(" & ".join(tex_escape(h) for h in [*header[:n_text], *short]) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(body):
        if i and groups[i] != groups[i - 1]:
            lines.append(r"\midrule")
        text = [tex_escape(c) for c in row[:n_text]]
        lines.append(" & ".join(text + [_tex_value(c) for c in row[n_text:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip\footnotesize"]
    lines += [tex_escape(n) + r"\\" for n in footnotes(table, frame, tolerance)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_wide_csv(table: Mapping[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """The table as numbers, side by side: <shot>shot_<fold|mean>_{reproduced,paper,delta} (+ gain columns)."""
    shown = frame[frame["shown"]].copy()
    shown["col"] = shown["shot"].astype(str) + "shot_" + np.where(shown["fold"] == "mean", "mean",
                                                                  "fold" + shown["fold"])
    values = ["reproduced", "paper", "delta"] + (["reproduced_std"] if (shown["n_seeds"] > 1).any() else [])
    imported = shown["recorded"].notna().any()
    wide = shown.pivot(index="row", columns="col", values=values + (["recorded"] if imported else []))
    if imported:  # the flag pivoted apart, so the numbers stay floats (and get rounded)
        wide = wide.join(shown.pivot(index="row", columns="col", values=["not_reproduced"]).astype(bool))
        values += ["recorded", "not_reproduced"]
    wide.columns = [f"{col}_{what}" for what, col in wide.columns]
    gains = shown[(shown["fold"] == "mean") & shown["delta_to"].notna()]
    if not gains.empty:
        g = gains.pivot(index="row", columns="shot", values=["gain", "paper_gain"])
        g.columns = [f"{shot}shot_{what}" for what, shot in g.columns]
        wide = wide.join(g)
    order = [c for _, _, c in [(s, f, f"{s}shot_{'mean' if f == 'mean' else 'fold' + f}")
                               for s, f, _ in _value_columns(table, shown) if f != "gain"]]
    cols = [f"{c}_{w}" for c in order for w in values]
    cols += sorted(c for c in wide.columns if c.endswith("gain"))
    meta = pd.DataFrame([{"row": r["id"], "group": r["group"], "label": r["label"],
                          **{c: r["extra"].get(c, "") for c in table["extra_columns"]}} for r in table["rows"]])
    return meta.merge(wide[cols].reset_index(), on="row", how="inner")


def summary_markdown(summary: pd.DataFrame, tolerance: float, demo: bool) -> str:
    title = "Reproduction summary" + (f" ({DEMO_NOTE})" if demo else "")
    tol = f"±{tolerance:.2f}"
    lines = [f"## {title}", "",
             "Columns: the values a table shows (folds and means, or means only); how many have a result of "
             "ours; how many of those are compared with the paper (a mean over fewer folds than the paper's 4 is "
             f"not); how many compared values lie within {tol} mIoU of the paper's; the mean and largest |ours − "
             "paper| over the compared values; how many gains over a reference row (over compared means) have the "
             "paper's sign; device-hours: train + evaluate wall time of the table's cells from the Snakemake "
             "benchmark files (GPU-hours when the device is cuda; a cell shared by tables counts in each).", "",
             f"| Table | Values shown | With a result | Compared with the paper | Within {tol} of the paper | "
             "Without a result yet | Mean abs. difference | Largest abs. difference | Gains with the paper's sign | "
             "Device-hours |", "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for s in summary.itertuples():
        gains = f"{s.gains_same_sign} of {s.gains}" if s.gains else "n/a"
        hours = MISSING if pd.isna(s.device_hours) else f"{s.device_hours:.2f} ({s.devices})"
        within = f"{s.within} of {s.compared}" if s.compared else "n/a"
        lines.append(f"| {s.table} | {s.shown} | {s.reproduced} | {s.compared} | {within} | {s.missing} | "
                     f"{_fmt(s.mean_abs_delta)} | {_fmt(s.max_abs_delta)} | {gains} | {hours} |")
    total = summary[["shown", "reproduced", "compared", "within", "missing", "recorded", "not_reproduced"]].sum()
    lines += ["", f"All tables: {total['shown']} values shown, {total['reproduced']} with a result"
                  + (f", {total['missing']} without one yet" if total["missing"] else "")
                  + f"; {total['compared']} compared with the paper, {total['within']} of them within {tol} mIoU."]
    if total["compared"] < total["reproduced"]:
        lines.append(f"{total['reproduced'] - total['compared']} values with a result are not compared: they are "
                     "means over fewer folds than the paper's 4 (or the paper has no value for them).")
    if total["recorded"]:
        lines += ["", f"Imported from a results bundle: {total['recorded'] - total['not_reproduced']} of "
                      f"{total['recorded']} shown values re-evaluated here within "
                      f"±{summary['reevaluation_tolerance'].iloc[0]:.2f} mIoU of the bundle's recorded number; "
                      f"{total['not_reproduced']} {NOT_REPRODUCED}."]
    return "\n".join(lines) + "\n"


def write_tables(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, out_dir: str | Path,
                 names: Iterable[str] | None = None, tolerance: float = 1.0, demo: bool = False,
                 shots: Sequence[int] | None = None, folds: Sequence[int] | None = None,
                 summary: str | Path | None = None, comparison: str | Path | None = None,
                 seeds: Sequence[int] = (DEFAULT_SEED,),
                 reevaluation_tolerance: float = REEVALUATION_TOLERANCE) -> list[Path]:
    """Write ``<out_dir>/tableN.{csv,md,tex}`` per table; ``summary`` (markdown, the named tables) and
    ``comparison`` (the long frame of ``compare`` as csv) when given. Returns the paths written."""
    out_dir = Path(out_dir)
    tables = tables_of(tables)
    names = list(tables) if names is None else list(names)
    frame = compare(tables, results, paper, names=names, shots=shots, folds=folds, tolerance=tolerance, seeds=seeds,
                    reevaluation_tolerance=reevaluation_tolerance)
    written = []
    for name in names:
        sub = frame[frame["table"] == name]
        if sub.empty:
            raise TablesError(f"table {name!r} has no cells for shots={shots} folds={folds}")
        wide = to_wide_csv(tables[name], sub).round(4)
        written.append(atomic_write(out_dir / f"{name}.csv", lambda tmp, w=wide: w.to_csv(tmp, index=False)))
        written.append(atomic_write_text(out_dir / f"{name}.md", to_markdown(tables[name], sub, tolerance, demo)))
        written.append(atomic_write_text(out_dir / f"{name}.tex",
                                         to_latex(tables[name], sub, tolerance, demo, name)))
    if summary is not None:
        text = summary_markdown(summarise(frame, tolerance), tolerance, demo)
        written.append(atomic_write_text(summary, text))
    if comparison is not None:
        written.append(atomic_write(comparison, lambda tmp: frame.to_csv(tmp, index=False)))
    return written
