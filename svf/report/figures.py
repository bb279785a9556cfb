"""Figures: their common look (palette, page width, title, atomic saving), Figure 6 (singular values before/after
SVF) and the reproduced-vs-paper overview; the training curves are svf/report/curves.py's.

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
import pandas as pd  # noqa: E402

from ..errors import ResultsError  # noqa: E402
from ..pipeline.cells import DEFAULT_SEED, parse_cell_id  # noqa: E402
from ..pipeline.paths import SINGULAR_VALUES  # noqa: E402
from ..pipeline.tables import tables_of  # noqa: E402
from . import atomic_write  # noqa: E402
from .comparison import compare  # noqa: E402
from .tables import DEMO_NOTE  # noqa: E402

#: layer3's convs in the singular_values.json keys: "layer3.<block>.conv2" (3x3) / ".conv3" (1x1), optionally
#: followed by a sub-name (e.g. ".vector_S").
_LAYER3 = re.compile(r"^layer3\.(?P<block>\d+)\.(?P<conv>conv[23])(?:\..+)?$")
KIND_OF_CONV = {"conv2": "3×3", "conv3": "1×1"}


#: Okabe & Ito's colour-blind-safe palette (black first, yellow last: faint on white).
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442")
#: A figure's width in inches: a page's text width, so that the fonts below stay legible when printed.
PAGE_WIDTH_IN = 7.0
plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
                     "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 9})


class FigureError(ResultsError):
    """A figure input is missing or malformed; the message names the file and key."""


def figure_title(fig: plt.Figure, title: str, demo: bool, subtitle: str = "") -> None:
    """The title, a smaller subtitle line, and in demo runs the mark every demo output carries."""
    import textwrap

    lines = [title] + textwrap.wrap(subtitle, 115) + ([DEMO_NOTE.upper()] if demo else [])
    fig.suptitle("\n".join(lines), fontsize=9)


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


def plot_figure6(data: pd.DataFrame, title: str = "", demo: bool = False) -> plt.Figure:
    """The paper's two panels, (a) the last 3×3 and (b) the last 1×1 conv of layer3: the change of each of the
    top initial singular values after SVF (after − before), one bar per fold (colour-blind-safe colours)."""
    kinds = [k for k in KIND_OF_CONV.values() if k in set(data["kind"])]
    cells = list(dict.fromkeys(data["cell_id"]))
    fig, axes = plt.subplots(len(kinds), 1, figsize=(PAGE_WIDTH_IN, 2.3 * len(kinds) + 0.9), squeeze=False,
                             sharex=True)
    width = 0.8 / len(cells)
    for panel, (ax, kind) in enumerate(zip(axes[:, 0], kinds)):
        d = data[data["kind"] == kind]
        for i, cid in enumerate(cells):
            c = d[d["cell_id"] == cid]
            ax.bar(c["rank"] + 1 + (i - (len(cells) - 1) / 2) * width, c["change"], width=width,
                   color=OKABE_ITO[(i + 1) % len(OKABE_ITO)], label=f"fold {parse_cell_id(cid)['fold']}")
        ax.axhline(0, color="black", linewidth=0.6)
        layer = ", ".join(dict.fromkeys(d["layer"]))
        ax.set_title(f"({'ab'[panel]}) last {kind} conv of layer3 ({layer}): {len(set(d['rank']))} largest initial "
                     f"singular values", loc="left")
        ax.set_ylabel("change of S\n(after − before)")
        ax.grid(axis="y", linewidth=0.3, color="0.85")
        ax.set_axisbelow(True)
        if len(cells) > 1 or panel == 0:
            ax.legend(ncols=min(len(cells), 4), loc="lower right", frameon=False)
    top = int(data["rank"].max()) + 1
    axes[-1, 0].set_xlabel("rank of the initial singular value (1 = largest)")
    axes[-1, 0].set_xticks([1, *range(5, top + 1, 5)] if top >= 5 else list(range(1, top + 1)))
    axes[-1, 0].set_xlim(0.4, top + 0.6)
    figure_title(fig, title or "Figure 6: change of the largest singular values after SVF", demo,
                 "R50 baseline†+SVF, 1-shot; the plotted numbers, with the values before and after, are in the csv")
    fig.tight_layout()
    return fig


def write_figure6(cells_root: str | Path, cell_ids: Sequence[str], out: str | Path, top: int = 30,
                  data_csv: str | Path | None = None, title: str = "", demo: bool = False) -> list[Path]:
    """Figure 6 as ``out`` (png) plus a pdf next to it; optionally the plotted numbers as csv."""
    data = figure6_data(cells_root, cell_ids, top=top)
    out = Path(out)
    fig = plot_figure6(data, title, demo)
    pdf = atomic_write(out.with_suffix(".pdf"), lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
    written = [save_figure(fig, out.with_suffix(".png")), pdf]
    if data_csv is not None:
        written.append(atomic_write(data_csv, lambda tmp: data.to_csv(tmp, index=False)))
    return written


# --- overview -----------------------------------------------------------------------------------------------------

def _folds_note(d: pd.DataFrame) -> str:
    """"" for a table on all its folds; else which folds its reproduced means cover."""
    if d["comparable"].all():
        return ""
    folds = sorted(f for f in d["fold"].unique() if f != "mean")
    return f"fold{'s' if len(folds) > 1 else ''} {', '.join(folds)} only"


def _mean_bars(ax: plt.Axes, d: pd.DataFrame, note: str) -> None:
    """The paper's and our mean per row, bars from 0 (a cut axis would exaggerate the differences), labelled by
    row id (labels like "2, 3, 4" repeat within a table). With a fold subset the reproduced bar says so: it is not
    the paper's 4-fold mean."""
    d = d[d["fold"] == "mean"]
    labels = d["row"] + [f" ({s}-shot)" if d["shot"].nunique() > 1 else "" for s in d["shot"]]
    y = np.arange(len(d))
    ax.barh(y - 0.2, d["paper"].fillna(0), height=0.4, color="0.7", label="paper (mean of 4 folds)")
    ax.barh(y + 0.2, d["reproduced"].fillna(0), height=0.4, color=OKABE_ITO[5],
            label=f"ours ({note})" if note else "ours")
    for yi in y[d["reproduced"].isna().to_numpy()]:
        ax.text(0.5, yi + 0.2, "no result yet", va="center", fontsize=6)
    values = pd.concat([d["paper"], d["reproduced"]]).dropna()
    ax.set_xlim(0, max(float(values.max()) * 1.05, 1.0) if len(values) else 100)
    ax.set_yticks(y, labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("mean mIoU (%)")
    ax.set_ylabel("table row")
    ax.grid(axis="x", linewidth=0.3, color="0.85")
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(-0.02, -0.22), frameon=False, ncols=1)


def _fold_words(folds: pd.Series) -> str:
    names = sorted(set(folds))
    return f"fold{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _scatter(ax: plt.Axes, d: pd.DataFrame, tolerance: float) -> None:
    """Reproduced against paper for every comparable value (folds, and means over all 4 folds), with the identity
    line and the tolerance band."""
    both = d[d["comparable"]].dropna(subset=["reproduced", "paper"])
    if both.empty:
        ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
    for i, ((shot, is_mean), g) in enumerate(both.groupby(["shot", both["fold"] == "mean"])):
        ax.scatter(g["paper"], g["reproduced"], s=22 if is_mean else 9, marker="D" if is_mean else "o",
                   color=OKABE_ITO[(i + 1) % len(OKABE_ITO)], alpha=0.85,
                   label=f"{shot}-shot, " + ("means" if is_mean else _fold_words(g["fold"])))
    values = pd.concat([d["paper"], both["reproduced"]]).dropna()
    hi = float(values.max()) + 2 if len(values) else 100.0
    xs = np.array([0.0, hi])
    ax.plot(xs, xs, color="black", linewidth=0.7)
    ax.fill_between(xs, xs - tolerance, xs + tolerance, color="0.85", label=f"±{tolerance:g} of the paper")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="paper mIoU (%)", ylabel="our mIoU (%)")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", frameon=False)


def plot_overview(tables: Mapping[str, Any], frame: pd.DataFrame, tolerance: float, demo: bool) -> plt.Figure:
    """One panel per table: reproduced vs paper (scatter for fold tables, paired bars for mean-only tables), every
    axis from 0."""
    tables = tables_of(tables)
    names = list(dict.fromkeys(frame["table"]))
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH_IN, 2.9 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    notes = []
    for ax, name in zip(axes.flat, names):
        d = frame[frame["table"] == name]
        note = _folds_note(d)
        ax.set_title(tables[name]["title"].split(":")[0], loc="left")
        if tables[name]["columns"] == "mean":
            _mean_bars(ax, d, note)
        else:
            _scatter(ax, d[d["shown"]], tolerance)
        notes.append(note)
    subtitle = "" if not any(notes) else ("our values cover " + ", ".join(sorted(set(n for n in notes if n)))
                                          + ": our means are not the paper's 4-fold means")
    figure_title(fig, "Ours against the paper, mIoU (%)", demo, subtitle)
    fig.tight_layout()
    return fig


def write_overview(tables: Mapping[str, Any], results: pd.DataFrame, paper: pd.DataFrame, out: str | Path,
                   names: Iterable[str] | None = None, tolerance: float = 1.0, demo: bool = False,
                   shots: Sequence[int] | None = None, folds: Sequence[int] | None = None,
                   seeds: Sequence[int] = (DEFAULT_SEED,)) -> Path:
    frame = compare(tables, results, paper, names=names, shots=shots, folds=folds, tolerance=tolerance, seeds=seeds)
    return save_figure(plot_overview(tables, frame, tolerance, demo), out)
