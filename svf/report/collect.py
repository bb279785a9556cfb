"""Collect per-cell results into one table: ``results/results.csv``, one row per cell.

Inputs (written by the training/evaluation engine and by Snakemake):
- ``<cells_root>/<cell_id>/metrics.json`` (the contract in docs/architecture.md and docs/report.md);
- ``<benchmarks>/train/<cell_id>.tsv`` and ``<benchmarks>/evaluate/<cell_id>.tsv`` (Snakemake ``benchmark:``
  files; optional: a cell run by hand has none and gets empty device-hours);
- ``<cells_root>/<cell_id>/recorded_metrics.json`` of a cell imported from a results bundle (svf/bundle/): the
  bundle's own number, ``recorded_miou`` beside the one re-evaluated here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import ResultsError
from ..files import read_document
from ..pipeline.cells import CELL_KEYS, cell_id
from ..pipeline.paths import METRICS, RECORDED_METRICS, benchmark_name
from . import atomic_write

#: Keys every metrics.json must have.
METRICS_KEYS = ("cell", "cell_id", "miou", "fb_iou", "class_iou", "episodes", "seeds", "protocol", "per_seed",
                "epochs_run", "best_epoch", "train_wall_time_s", "eval_wall_time_s", "trainable_params",
                "config_hash", "code_version", "device")

#: Libraries whose versions metrics.json records (``versions``); results.csv has a ``<lib>_version`` column each.
VERSIONED = ("python", "torch", "torchvision", "numpy", "cuda", "cudnn")

#: Columns of results.csv before the per-class ``class_iou_<k>`` columns.
RESULT_COLUMNS = (*CELL_KEYS, "cell_id", "miou", "recorded_miou", "fb_iou", "all_foreground_miou", "miou_seed_std",
                  "n_seeds", "episodes", "protocol", "epochs_run", "best_epoch", "train_wall_time_s", "eval_wall_time_s",
                  "train_bench_s",
                  "eval_bench_s", "device", "device_hours", "gpu_hours", "trainable_params", "config_hash",
                  "code_version", *(f"{lib}_version" for lib in VERSIONED), "gpu_name")


class CollectError(ResultsError):
    """A results file is missing or malformed; the message names the file and the key."""


def read_metrics(path: Path, cells_root: Path) -> dict[str, Any]:
    """Read and check one metrics.json: every contract key present, its cell id matching its directory."""
    metrics = read_document(path, json.loads, json.JSONDecodeError, CollectError,
                            "metrics file not found (has the cell been evaluated?)", "JSON")
    missing = [k for k in METRICS_KEYS if k not in metrics]
    if missing:
        raise CollectError(f"{path}: missing key(s) {missing}")
    missing_cell = [k for k in CELL_KEYS if k not in metrics["cell"]]
    if missing_cell:
        raise CollectError(f"{path}: 'cell' lacks {missing_cell}")
    expected = path.parent.relative_to(cells_root).as_posix()
    for name, value in (("cell_id", metrics["cell_id"]), ("cell_id(cell)", cell_id(metrics["cell"]))):
        if value != expected:
            raise CollectError(f"{path}: {name} is {value!r} but the file sits in {expected!r}")
    return metrics


def benchmark_seconds(path: Path) -> float:
    """Wall seconds in a Snakemake benchmark TSV (mean over ``repeat()`` rows); NaN when the file is absent."""
    if not path.is_file():
        return float("nan")
    bench = pd.read_csv(path, sep="\t")
    if "s" not in bench.columns or bench.empty:
        raise CollectError(f"{path}: benchmark file has no 's' column or no rows (columns: {list(bench.columns)})")
    return float(pd.to_numeric(bench["s"], errors="raise").mean())


def recorded_miou(cell_dir: Path) -> float:
    """The mIoU a results bundle recorded for an imported cell (``recorded_metrics.json``); NaN for a cell trained
    here."""
    path = cell_dir / RECORDED_METRICS
    if not path.is_file():
        return float("nan")
    recorded = read_document(path, json.loads, json.JSONDecodeError, CollectError, "not found", "JSON")
    if "miou" not in recorded:
        raise CollectError(f"{path}: missing key 'miou'")
    return float(recorded["miou"])


def metrics_row(metrics: Mapping[str, Any], benchmarks: Path, recorded: float = float("nan")) -> dict[str, Any]:
    """Flatten one cell's metrics (+ its benchmark seconds, + the mIoU a bundle recorded for it) into a results.csv
    row."""
    cid = metrics["cell_id"]
    per_seed = [float(s["miou"]) for s in metrics["per_seed"]]
    seeds = metrics["seeds"]
    train_s = benchmark_seconds(benchmarks / benchmark_name("train", cid))
    eval_s = benchmark_seconds(benchmarks / benchmark_name("evaluate", cid))
    row: dict[str, Any] = {k: metrics["cell"][k] for k in CELL_KEYS}
    row.update({
        "cell_id": cid,
        "miou": float(metrics["miou"]),
        "recorded_miou": recorded,
        "fb_iou": float(metrics["fb_iou"]),
        # absent in metrics made before it was recorded
        "all_foreground_miou": float(metrics.get("all_foreground_miou") or "nan"),
        "miou_seed_std": float(np.std(per_seed)) if len(per_seed) > 1 else float("nan"),
        "n_seeds": len(seeds) if isinstance(seeds, list) else int(seeds),
        "episodes": metrics["episodes"],
        "protocol": metrics["protocol"],
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "train_wall_time_s": metrics["train_wall_time_s"],
        "eval_wall_time_s": metrics["eval_wall_time_s"],
        "train_bench_s": train_s,
        "eval_bench_s": eval_s,
        "device": str(metrics["device"]),
        "trainable_params": metrics["trainable_params"],
        "config_hash": metrics["config_hash"],
        "code_version": metrics["code_version"],
    })
    versions = metrics.get("versions") or {}  # absent in results made before versions were recorded
    row.update({f"{lib}_version": versions.get(lib) for lib in VERSIONED})
    row["gpu_name"] = versions.get("gpu")
    # None = a class without any pixels in its episodes (evaluation with absent_class: skip)
    row.update({f"class_iou_{k}": float("nan") if v is None else float(v) for k, v in metrics["class_iou"].items()})
    return row


def find_cells(cells_root: Path) -> list[str]:
    """Every cell id under ``cells_root`` that has a metrics.json, sorted."""
    return sorted(p.parent.relative_to(cells_root).as_posix() for p in cells_root.rglob(METRICS))


def check_config_hashes(results: pd.DataFrame, allow_mixed: bool) -> None:
    """Refuse results from different configurations (e.g. a demo cell among paper-scale cells)."""
    counts = results["config_hash"].value_counts()
    if len(counts) > 1 and not allow_mixed:
        detail = ", ".join(
            f"{h} ({n} cells, e.g. {results.loc[results.config_hash == h, 'cell_id'].iloc[0]})"
            for h, n in counts.items())
        raise CollectError(f"results mix {len(counts)} config hashes: {detail}; re-run the odd cells or pass "
                           f"--allow-mixed-config")


def collect(cells_root: str | Path, benchmarks: str | Path, cells: Iterable[str] | None = None,
            allow_mixed_config: bool = False) -> pd.DataFrame:
    """One row per cell, columns RESULT_COLUMNS then class_iou_<k> (numeric order)."""
    cells_root, benchmarks = Path(cells_root), Path(benchmarks)
    ids = find_cells(cells_root) if cells is None else list(dict.fromkeys(cells))
    rows = [metrics_row(read_metrics(cells_root / cid / METRICS, cells_root), benchmarks,
                        recorded_miou(cells_root / cid)) for cid in ids]
    results = pd.DataFrame(rows, columns=None if rows else list(RESULT_COLUMNS))
    if results.empty:
        return results
    check_config_hashes(results, allow_mixed_config)
    # Device-hours from the benchmark wall time; they are GPU-hours only where the cell ran on a GPU.
    results["device_hours"] = (results["train_bench_s"] + results["eval_bench_s"]) / 3600.0
    on_gpu = results["device"].str.startswith("cuda")
    results["gpu_hours"] = results["device_hours"].where(on_gpu)
    class_cols = sorted((c for c in results.columns if c.startswith("class_iou_")), key=_class_order)
    return results[[*RESULT_COLUMNS, *class_cols]]


def _class_order(column: str) -> tuple[int, str]:
    """class_iou_2 before class_iou_10 (numeric ids first, in numeric order)."""
    key = column[len("class_iou_"):]
    return (int(key), "") if key.isdigit() else (1 << 30, key)


def write_results(results: pd.DataFrame, out: str | Path) -> Path:
    """Write results.csv atomically."""
    return atomic_write(out, lambda tmp: results.to_csv(tmp, index=False))


def read_results(path: str | Path) -> pd.DataFrame:
    """Read results.csv back (the reader of ``svf tables`` and the figures)."""
    path = Path(path)
    if not path.is_file():
        raise CollectError(f"{path}: results file not found (run `svf collect` first)")
    try:
        results = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise CollectError(f"{path}: results file is empty (not even a header)") from None
    missing = [c for c in ("cell_id", "miou") if c not in results.columns]
    if missing:
        raise CollectError(f"{path}: missing column(s) {missing}")
    if results["cell_id"].duplicated().any():
        dups = results.loc[results["cell_id"].duplicated(), "cell_id"].tolist()
        raise CollectError(f"{path}: duplicate cell_id(s) {dups[:5]}")
    return results
