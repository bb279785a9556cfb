"""The training curves of cells: validation mIoU and training loss per epoch from their train_log.csv, in panels
of a table's rows (a reference row with the rows compared to it). The look and the saving are svf/report/figures.py's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..pipeline.cells import CELL_KEYS, parse_cell_id
from ..pipeline.paths import TRAIN_LOG
from .figures import OKABE_ITO, PAGE_WIDTH_IN, FigureError, figure_title, save_figure
from .figures import plt  # pyplot on the backend svf/report/figures.py chose (Agg)

TRAIN_LOG_COLUMNS = ("epoch", "step", "loss", "lr_head", "lr_backbone", "val_miou", "time_s")


def read_train_logs(cells_root: str | Path, cell_ids: Sequence[str]) -> pd.DataFrame:
    """All train_log.csv of the cells, one frame, with the cell parameters as columns."""
    frames = []
    for cid in cell_ids:
        path = Path(cells_root) / cid / TRAIN_LOG
        if not path.is_file():
            raise FigureError(f"{path}: training log not found")
        log = pd.read_csv(path)
        missing = [c for c in ("epoch", "loss", "val_miou") if c not in log.columns]
        if missing:
            raise FigureError(f"{path}: missing column(s) {missing}")
        frames.append(log.assign(cell_id=cid, **parse_cell_id(cid)))
    if not frames:
        return pd.DataFrame(columns=[*TRAIN_LOG_COLUMNS, "cell_id", *CELL_KEYS])
    return pd.concat(frames, ignore_index=True)


def epoch_curves(logs: pd.DataFrame) -> pd.DataFrame:
    """Per cell and epoch: mean training loss and the last validation mIoU of the epoch."""
    logs = logs.assign(val_miou=pd.to_numeric(logs["val_miou"], errors="coerce"))
    per_epoch = logs.groupby(["cell_id", "epoch"], sort=False).agg(loss=("loss", "mean"),
                                                                   val_miou=("val_miou", "last"))
    meta = logs.drop_duplicates("cell_id").set_index("cell_id")[list(CELL_KEYS)]
    return per_epoch.reset_index().join(meta, on="cell_id")


def row_groups(table: Mapping[str, Any]) -> list[list[Mapping[str, Any]]]:
    """A table's rows in panels: each reference row with the rows compared to it (``delta_to``), in table order
    (Table 1's nine pairs give nine panels of two lines); the rows that are neither share one panel (all of Tables 7
    and 8, which have no reference rows)."""
    rows = list(table["rows"])
    ids = {r["id"] for r in rows}
    referenced = {r["delta_to"] for r in rows if r.get("delta_to") in ids}
    groups = [[row] + [r for r in rows if r.get("delta_to") == row["id"]] for row in rows if row["id"] in referenced]
    alone = [r for r in rows if r["id"] not in referenced and r.get("delta_to") not in ids]
    return groups + ([alone] if alone else [])


def _line_label(row: Mapping[str, Any], panel: list[Mapping[str, Any]]) -> str:
    """The row's label, with its group where the panel mixes groups (Table 5's "2, 3, 4" is a part fine-tune and
    SVF)."""
    label = row["label"] if row["label"].strip(" -") else row["policy"]  # Table 5's frozen row reads "-"
    return label if len({r["group"] for r in panel}) == 1 else f"{row['group']} {label}"


def _unique_labels(labelled: list[tuple[Mapping[str, Any], str]]) -> list[tuple[str, str]]:
    """(row id, label) with a repeated label told apart by the row's ticked extra columns (Table 6's three "2, 3,
    4" part fine-tunes: 3×3 and 1×1, 3×3, 1×1), else by its id."""
    counts = pd.Series([label for _, label in labelled]).value_counts()
    out = []
    for row, label in labelled:
        if counts[label] > 1:
            ticked = [c for c, v in row.get("extra", {}).items() if v == "✓"]
            label = f"{label}: {' + '.join(ticked)}" if ticked else f"{label} ({row['id']})"
        out.append((row["id"], label))
    return out


def _series_labels(curves: pd.DataFrame) -> pd.Series:
    """Without a table: a line per cell parameters that vary between the cells (fold, shot, seed aside)."""
    keys = [k for k in CELL_KEYS if k not in ("fold", "shot", "seed")]
    varying = [k for k in keys if curves[k].nunique() > 1] or ["policy"]
    return curves[varying].astype(str).agg(" / ".join, axis=1)


def _curve_panels(curves: pd.DataFrame, table: Mapping[str, Any] | None
                  ) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sets ``curves["series"]`` and returns the panels: (title, [(series, line label), ...]); with a table, a
    series is a row id, grouped by :func:`row_groups`; without, the varying cell parameters in one panel."""
    if table is None:
        curves["series"] = _series_labels(curves)
        return [("", [(s, s) for s in dict.fromkeys(curves["series"])])]
    from ..pipeline.tables import ROW_CELL_KEYS

    rows = {tuple(row[k] for k in ROW_CELL_KEYS): row for row in table["rows"]}
    keys = curves[list(ROW_CELL_KEYS)].apply(tuple, axis=1)
    unknown = sorted({k for k in keys if k not in rows})
    if unknown:
        raise FigureError(f"cells {unknown[:3]} are not rows of {table.get('name', 'the table')}")
    curves["series"] = [rows[k]["id"] for k in keys]
    present = set(curves["series"])
    panels = []
    for group in row_groups(table):
        group = [r for r in group if r["id"] in present]
        if not group:
            continue
        lines = _unique_labels([(r, _line_label(r, group)) for r in group])
        has_reference = group[0].get("delta_to") is None and any(r.get("delta_to") for r in group[1:])
        if has_reference and len(group) == 2:
            title = f"{group[0]['group']}: {lines[0][1]} vs {lines[1][1]}"
        elif has_reference:
            title = f"{group[0]['group']}: each row against {lines[0][1]} (black)"
        else:
            title = f"{group[0]['group']}: {lines[0][1]}" if len(group) == 1 else ""
        panels.append((title, lines))
    return panels


_STYLE_WORDS = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dotted"}


def plot_curves(curves: pd.DataFrame, title: str, table: Mapping[str, Any] | None = None,
                demo: bool = False) -> plt.Figure:
    """Per panel (a reference row and the rows compared with it), validation mIoU and training loss per epoch, mean
    over folds; colour = row (Okabe-Ito, the reference in black), line style = shot."""
    if curves.empty:
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 2))
        ax.text(0.5, 0.5, "no training logs", ha="center", va="center")
        ax.set_axis_off()
        figure_title(fig, title, demo)
        return fig
    curves = curves.copy()
    panels = _curve_panels(curves, table)
    mean = curves.groupby(["series", "shot", "epoch"], sort=False)[["loss", "val_miou"]].mean().reset_index()
    folds = sorted(curves["fold"].unique())
    shots = sorted(curves["shot"].unique())
    styles = dict(zip(shots, ("-", "--", ":", "-.")))
    per_row = 2 if len(panels) > 1 else 1  # panels side by side, each a pair of axes (mIoU | loss)
    n_rows = -(-len(panels) // per_row)
    single = len(panels) == 1  # one panel pair with many rows: taller axes, the legend below both
    fig, axes = plt.subplots(n_rows, 2 * per_row, figsize=(PAGE_WIDTH_IN, 1.9 * n_rows + 0.9 + 0.8 * single),
                             squeeze=False)
    for ax in axes.flat[2 * len(panels):]:
        ax.set_axis_off()
    for p, (panel_title, lines) in enumerate(panels):
        ax_miou, ax_loss = axes[p // per_row, 2 * (p % per_row)], axes[p // per_row, 2 * (p % per_row) + 1]
        for i, (series, label) in enumerate(lines):
            for shot in shots:
                d = mean[(mean["series"] == series) & (mean["shot"] == shot)]
                if d.empty:
                    continue
                style = dict(color=OKABE_ITO[i % len(OKABE_ITO)], linestyle=styles[shot], linewidth=1.1,
                             label=label if shot == shots[0] else None)  # the subtitle names the line styles
                ax_miou.plot(d["epoch"], d["val_miou"], **style)
                ax_loss.plot(d["epoch"], d["loss"], **style)
        ax_miou.set_title(panel_title, loc="left")
        ax_miou.set(ylabel="validation mIoU (%)", ylim=(0, None))
        ax_loss.set(ylabel="training loss")
        for ax in (ax_miou, ax_loss):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
            ax.grid(linewidth=0.3, color="0.85")
        if len(panels) > 1:
            ax_loss.legend(loc="best", frameon=False, fontsize=6)
    where = f"fold {folds[0]}" if len(folds) == 1 else f"mean over folds {', '.join(map(str, folds))}"
    shot_styles = "; " + ", ".join(f"{s}-shot {_STYLE_WORDS[styles[s]]}" for s in shots) if len(shots) > 1 else ""
    figure_title(fig, title, demo, f"training curves per epoch ({where}{shot_styles}); validation on the fold's "
                                   f"test episodes, as the authors' best-epoch selection")
    if single:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        rows_of_legend = -(-len(labels) // 4)
        fig.tight_layout(rect=(0, 0.06 + 0.05 * rows_of_legend, 1, 1))
        fig.legend(handles, labels, loc="lower center", ncols=4, frameon=False)
    else:
        fig.tight_layout()
    return fig


def write_curves(cells_root: str | Path, cell_ids: Sequence[str], out: str | Path, title: str = "",
                 table: Mapping[str, Any] | None = None, demo: bool = False) -> Path:
    """The training curves of ``cell_ids``; with ``table`` (a table of load_tables), labelled and grouped by its
    rows and titled with its title."""
    curves = epoch_curves(read_train_logs(cells_root, cell_ids)) if cell_ids else pd.DataFrame()
    title = title or (table["title"] if table is not None else "training curves")
    return save_figure(plot_curves(curves, title, table, demo), out)
