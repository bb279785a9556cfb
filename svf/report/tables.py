"""Render the paper's tables from results.csv: ``tableN.{csv,md,tex}`` and ``summary.md``.

The numbers come from ``svf.report.comparison.compare`` (one long frame: ours, the paper's, their difference, the
gains, the flags of imported cells); this module only lays that frame out as the paper does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..pipeline.cells import DEFAULT_SEED
from ..pipeline.paths import TABLE_FORMATS
from ..pipeline.tables import tables_of
from . import atomic_write, atomic_write_text
from .comparison import REEVALUATION_TOLERANCE, TablesError, compare, summarise

DEMO_NOTE = "demo scale — not comparable to the paper"
MISSING = "—"
NOT_REPRODUCED = "not reproduced from weights"


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
        csv, md, tex = (out_dir / f"{name}.{ext}" for ext in TABLE_FORMATS)
        written.append(atomic_write(csv, lambda tmp, w=wide: w.to_csv(tmp, index=False)))
        written.append(atomic_write_text(md, to_markdown(tables[name], sub, tolerance, demo)))
        written.append(atomic_write_text(tex, to_latex(tables[name], sub, tolerance, demo, name)))
    if summary is not None:
        text = summary_markdown(summarise(frame, tolerance), tolerance, demo)
        written.append(atomic_write_text(summary, text))
    if comparison is not None:
        written.append(atomic_write(comparison, lambda tmp: frame.to_csv(tmp, index=False)))
    return written
