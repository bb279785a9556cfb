"""Figures: Figure 6 (singular values before/after SVF), training curves, reproduced-vs-paper overview.

Matplotlib runs on the Agg backend (no display on cluster nodes); every file is written atomically.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from ..errors import ResultsError  # noqa: E402
from ..pipeline.cells import CELL_KEYS, DEFAULT_SEED, parse_cell_id  # noqa: E402
from ..pipeline.paths import SINGULAR_VALUES, TRAIN_LOG  # noqa: E402
from ..pipeline.tables import tables_of  # noqa: E402
from . import atomic_write  # noqa: E402
from .tables import DEMO_NOTE, compare  # noqa: E402

#: layer3's convs in the singular_values.json keys: "layer3.<block>.conv2" (3x3) / ".conv3" (1x1), optionally
#: followed by a sub-name (e.g. ".vector_S").
_LAYER3 = re.compile(r"^layer3\.(?P<block>\d+)\.(?P<conv>conv[23])(?:\..+)?$")
KIND_OF_CONV = {"conv2": "3×3", "conv3": "1×1"}
TRAIN_LOG_COLUMNS = ("epoch", "step", "loss", "lr_head", "lr_backbone", "val_miou", "time_s")


class FigureError(ResultsError):
    """A figure input is missing or malformed; the message names the file and key."""


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save atomically in the format of the path's suffix, then close the figure."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


# --- Figure 6 -----------------------------------------------------------------------------------------------------

def read_singular_values(path: Path) -> dict[str, dict[str, list[float]]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FigureError(f"{path}: singular values file not found (is the cell's policy an SVF one?)") from None
    except json.JSONDecodeError as exc:
        raise FigureError(f"{path}: not valid JSON: {exc}") from None
    missing = [k for k in ("before", "after") if k not in data]
    if missing:
        raise FigureError(f"{path}: missing key(s) {missing}")
    return data


def figure6_layers(names: Iterable[str], source: str = "") -> dict[str, str]:
    """{'3×3': name, '1×1': name} of the last block of layer3 (layer3.5 in a full ResNet-50)."""
    found: dict[int, dict[str, str]] = {}
    for name in names:
        m = _LAYER3.match(name)
        if m:
            found.setdefault(int(m["block"]), {})[KIND_OF_CONV[m["conv"]]] = name
    complete = {b: convs for b, convs in found.items() if len(convs) == 2}
    if not complete:
        raise FigureError(f"{source}: no layer3 block with both conv2 (3×3) and conv3 (1×1) among the layers "
                          f"{sorted(n for n in names if n.startswith('layer3'))[:8]} (Figure 6 needs a ResNet)")
    return complete[max(complete)]


def figure6_data(cells_root: str | Path, cell_ids: Sequence[str], top: int = 30) -> pd.DataFrame:
    """Long frame: cell_id, fold, kind, layer, rank (0 = largest initial value), before, after, change."""
    frames = []
    for cid in cell_ids:
        path = Path(cells_root) / cid / SINGULAR_VALUES
        data = read_singular_values(path)
        for kind, layer in figure6_layers(data["before"], str(path)).items():
            if layer not in data["after"]:
                raise FigureError(f"{path}: layer {layer!r} is in 'before' but not in 'after'")
            before, after = np.asarray(data["before"][layer], float), np.asarray(data["after"][layer], float)
            if before.shape != after.shape:
                raise FigureError(f"{path}: {layer}: {before.size} values before, {after.size} after")
            order = np.argsort(-before, kind="stable")[:top]  # S starts sorted; sort anyway to be safe
            frames.append(pd.DataFrame({"cell_id": cid, "fold": parse_cell_id(cid)["fold"], "kind": kind,
                                        "layer": layer, "rank": np.arange(order.size), "index": order,
                                        "before": before[order], "after": after[order],
                                        "change": after[order] - before[order]}))
    if not frames:
        raise FigureError("figure6: no cells given")
    return pd.concat(frames, ignore_index=True)


def plot_figure6(data: pd.DataFrame, title: str = "") -> plt.Figure:
    """One row of panels per fold: for the 3×3 and the 1×1 conv, S before vs after and the change."""
    cells = list(dict.fromkeys(data["cell_id"]))
    kinds = [k for k in KIND_OF_CONV.values() if k in set(data["kind"])]
    fig, axes = plt.subplots(len(cells), 2 * len(kinds), figsize=(5.2 * len(kinds) * 2, 2.8 * len(cells)),
                             squeeze=False)
    for r, cid in enumerate(cells):
        fold = parse_cell_id(cid)["fold"]
        for k, kind in enumerate(kinds):
            d = data[(data["cell_id"] == cid) & (data["kind"] == kind)]
            ax_v, ax_c = axes[r, 2 * k], axes[r, 2 * k + 1]
            x = d["rank"].to_numpy()
            ax_v.bar(x - 0.2, d["before"], width=0.4, color="0.65", label="before")
            ax_v.bar(x + 0.2, d["after"], width=0.4, color="tab:blue", label="after")
            ax_v.set_title(f"fold {fold} — {d['layer'].iloc[0]} ({kind}): S", fontsize=9)
            colours = np.where(d["change"] >= 0, "tab:green", "tab:red")
            ax_c.bar(x, d["change"], color=colours)
            ax_c.axhline(0, color="black", linewidth=0.6)
            ax_c.set_title(f"fold {fold} — {kind}: after − before", fontsize=9)
            for ax in (ax_v, ax_c):
                ax.set_xlabel(f"index of the {len(x)} largest initial singular values", fontsize=8)
                ax.tick_params(labelsize=7)
            if r == 0 and k == 0:
                ax_v.legend(fontsize=7)
    fig.suptitle(title or "Figure 6: top initial singular values of layer3's last 3×3 and 1×1 conv, "
                          "before and after SVF", fontsize=11)
    fig.tight_layout()
    return fig


def write_figure6(cells_root: str | Path, cell_ids: Sequence[str], out: str | Path, top: int = 30,
                  data_csv: str | Path | None = None, title: str = "") -> list[Path]:
    """Figure 6 as ``out`` (png) plus a pdf next to it; optionally the plotted numbers as csv."""
    data = figure6_data(cells_root, cell_ids, top=top)
    out = Path(out)
    fig = plot_figure6(data, title)
    pdf = atomic_write(out.with_suffix(".pdf"), lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
    written = [save_figure(fig, out.with_suffix(".png")), pdf]
    if data_csv is not None:
        written.append(atomic_write(data_csv, lambda tmp: data.to_csv(tmp, index=False)))
    return written


# --- training curves ----------------------------------------------------------------------------------------------

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


def _series_labels(curves: pd.DataFrame) -> pd.Series:
    """A line per cell without its fold; the label keeps only the parameters that vary between lines."""
    keys = [k for k in CELL_KEYS if k not in ("fold", "shot", "seed")]
    varying = [k for k in keys if curves[k].nunique() > 1] or ["policy"]
    return curves[varying].astype(str).agg(" / ".join, axis=1)


def plot_curves(curves: pd.DataFrame, title: str) -> plt.Figure:
    """Rows = shots; columns = training loss, validation mIoU; one line per table row (mean over folds)."""
    if curves.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.text(0.5, 0.5, "no training logs", ha="center", va="center")
        ax.set_axis_off()
        fig.suptitle(title)
        return fig
    curves = curves.assign(series=_series_labels(curves))
    mean = curves.groupby(["shot", "series", "epoch"], sort=False)[["loss", "val_miou"]].mean().reset_index()
    n_folds = curves.groupby(["shot", "series"])["fold"].nunique()
    shots = sorted(mean["shot"].unique())
    most = int(mean.groupby("shot")["series"].nunique().max())
    fig, axes = plt.subplots(len(shots), 2, figsize=(12, max(3.4, 0.16 * most + 1.0) * len(shots)), squeeze=False)
    colours, styles = plt.get_cmap("tab20").colors, ("-", "--", ":")  # tables have up to 18 rows per shot
    for r, shot in enumerate(shots):
        for i, (series, d) in enumerate(mean[mean["shot"] == shot].groupby("series", sort=False)):
            label = f"{series} ({n_folds[(shot, series)]} fold(s))"
            style = dict(color=colours[i % 20], linestyle=styles[(i // 20) % 3], linewidth=1, label=label)
            axes[r, 0].plot(d["epoch"], d["loss"], **style)
            axes[r, 1].plot(d["epoch"], d["val_miou"], marker=".", **style)
        for ax in axes[r]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[r, 0].set(title=f"{shot}-shot: training loss (mean over folds)", xlabel="epoch", ylabel="loss")
        axes[r, 1].set(title=f"{shot}-shot: validation mIoU (mean over folds)", xlabel="epoch", ylabel="mIoU (%)")
        axes[r, 1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_curves(cells_root: str | Path, cell_ids: Sequence[str], out: str | Path, title: str) -> Path:
    curves = epoch_curves(read_train_logs(cells_root, cell_ids)) if cell_ids else pd.DataFrame()
    return save_figure(plot_curves(curves, title), out)


# --- overview -----------------------------------------------------------------------------------------------------

def _mean_bars(ax: plt.Axes, d: pd.DataFrame) -> None:
    """Paper vs reproduced mean per row, labelled by row id (labels like "2, 3, 4" repeat within a table)."""
    labels = d["row"] + [f" ({s}-shot)" if d["shot"].nunique() > 1 else "" for s in d["shot"]]
    y = np.arange(len(d))
    values = pd.concat([d["paper"], d["reproduced"]]).dropna()
    lo = float(np.floor(values.min())) - 3 if len(values) else 0.0
    ax.barh(y + 0.2, d["paper"] - lo, left=lo, height=0.4, color="0.65", label="paper")
    ax.barh(y - 0.2, (d["reproduced"] - lo).fillna(0), left=lo, height=0.4, color="tab:blue", label="reproduced")
    for yi in y[d["reproduced"].isna().to_numpy()]:
        ax.text(lo + 0.3, yi - 0.2, "not reproduced yet", va="center", fontsize=6)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean mIoU (%)")
    ax.legend(fontsize=7, loc="lower right")


def plot_overview(tables: Mapping[str, Any], frame: pd.DataFrame, tolerance: float, demo: bool) -> plt.Figure:
    """One panel per table: reproduced vs paper (scatter for fold tables, paired bars for mean-only tables)."""
    tables = tables_of(tables)
    names = list(dict.fromkeys(frame["table"]))
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        d = frame[(frame["table"] == name) & frame["shown"]]
        both = d.dropna(subset=["reproduced", "paper"])
        ax.set_title(name, fontsize=10)
        if tables[name]["columns"] == "mean":
            _mean_bars(ax, d)
            continue
        if both.empty:
            ax.text(0.5, 0.5, "no reproduced values yet", ha="center", va="center", transform=ax.transAxes)
        for (shot, is_mean), g in both.groupby(["shot", both["fold"] == "mean"]):
            ax.scatter(g["paper"], g["reproduced"], s=28 if is_mean else 10, marker="D" if is_mean else "o",
                       label=f"{shot}-shot {'mean' if is_mean else 'folds'}", alpha=0.8)
        lo = np.nanmin([d["paper"].min(), both["reproduced"].min() if len(both) else np.nan]) - 2
        hi = np.nanmax([d["paper"].max(), both["reproduced"].max() if len(both) else np.nan]) + 2
        xs = np.array([lo, hi])
        ax.plot(xs, xs, color="black", linewidth=0.7)
        ax.fill_between(xs, xs - tolerance, xs + tolerance, color="0.85", label=f"±{tolerance:g}")
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="paper mIoU (%)", ylabel="reproduced mIoU (%)")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Reproduced vs paper" + (f" ({DEMO_NOTE})" if demo else ""))
    fig.tight_layout()
    return fig


def write_overview(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, out: str | Path,
                   names: Iterable[str] | None = None, tolerance: float = 1.0, demo: bool = False,
                   shots: Sequence[int] | None = None, folds: Sequence[int] | None = None,
                   seeds: Sequence[int] = (DEFAULT_SEED,)) -> Path:
    frame = compare(tables, results, paper, names=names, shots=shots, folds=folds, tolerance=tolerance, seeds=seeds)
    return save_figure(plot_overview(tables, frame, tolerance, demo), out)
