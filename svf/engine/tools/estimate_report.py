"""The output of ``svf estimate``: ``estimate.csv`` (every kind), ``estimate.md`` (assumptions, device-hours per
table and precision, every kind) and the projection against finished jobs' benchmark files."""
from __future__ import annotations

import math
from pathlib import Path

from ...pipeline.paths import ESTIMATE_NAMES
from .estimate import BASE_LEARNER, KIND_KEYS
from .projection import COCO_ORIGINAL_TRAIN_IMAGES

# --- against measured jobs ---------------------------------------------------------------------------------------

def compare_measured(result: dict, benchmarks: str | Path) -> dict:
    """The projection of the first precision against Snakemake's benchmark files of finished jobs (the ``s``
    column: wall seconds) under ``benchmarks`` (the config's <benchmarks> root): per job type and in all, for the
    cells whose files exist."""
    import csv

    from ...pipeline.paths import benchmark_name

    root, first = Path(benchmarks), result["precisions"][0]
    sums = {job: {"estimated_h": 0.0, "measured_h": 0.0, "jobs": 0} for job in ("train", "evaluate", "train_base")}

    def seconds(path: Path) -> float | None:
        if not path.is_file():
            return None
        with path.open() as handle:
            return float(next(csv.DictReader(handle, delimiter="\t"))["s"])

    for row in result["rows"]:
        if row["precision_column"] != first:
            continue
        if row["method"] == BASE_LEARNER:
            for fold in range(4):
                s = seconds(root / "train_base" / row["dataset"] / row["backbone"] / f"fold{fold}.tsv")
                if s is not None:
                    _add(sums["train_base"], row["hours_per_cell"], s)
            continue
        train_h, test_h = row["train_hours_per_cell"], row["test_hours_per_cell"]
        for fold, seed in row["fold_seeds"]:
            cell = {**{k: row[k] for k in KIND_KEYS}, "fold": fold, "seed": seed}
            for job, hours in (("train", train_h), ("evaluate", test_h)):
                s = seconds(root / benchmark_name(job, cell))
                if s is not None:
                    _add(sums[job], hours, s)
    total = {"estimated_h": sum(v["estimated_h"] for v in sums.values()),
             "measured_h": sum(v["measured_h"] for v in sums.values()), "jobs": sum(v["jobs"] for v in sums.values())}
    out = {**sums, "all": total}
    for value in out.values():
        value["error"] = value["estimated_h"] / value["measured_h"] - 1 if value["measured_h"] else math.nan
    return out


def _add(acc: dict, estimated_h: float, measured_s: float) -> None:
    acc["estimated_h"] += estimated_h
    acc["measured_h"] += measured_s / 3600
    acc["jobs"] += 1


# --- output --------------------------------------------------------------------------------------------------------

def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.3f}"


def write_estimate(result: dict, out_dir: str | Path, comparison: dict | None = None) -> list[Path]:
    import pandas as pd

    from ...files import atomic_write, write_text

    out = Path(out_dir)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "fold_seeds"} for r in result["rows"]])
    paths = [atomic_write(out / ESTIMATE_NAMES[0], lambda tmp: frame.round(6).to_csv(tmp, index=False))]
    paths.append(write_text(out / ESTIMATE_NAMES[1], "\n".join(estimate_lines(result, frame, comparison)) + "\n"))
    return paths


def estimate_lines(result: dict, frame, comparison: dict | None = None) -> list[str]:
    """The Markdown report: assumptions, device-hours per table and precision, every kind."""
    memory = "" if math.isnan(result["device_memory_gb"]) else f", {result['device_memory_gb']:.0f} GB"
    labels = list(dict.fromkeys(frame["precision"]))
    splits = "from the given splits" if result.get("splits") else (
        "PASCAL from the authors' lists, COCO † from BAM's published fold lists, COCO original assumed "
        f"({COCO_ORIGINAL_TRAIN_IMAGES:,} images per fold)")
    lines = [f"# Cost estimate on {result['device_name']} ({result['device']}{memory})", "",
             "Measured on synthetic tensors at each recipe's crop, batch, loss groups and micro-batch, BatchNorm as "
             "training runs it (svf/engine/tools/timing.py, svf/engine/tools/projection.py); every epoch assumed to "
             "run (early stop: best epoch at a third of the schedule, then `early_stop` more). Training lists: "
             f"{splits}. Loading: measured seconds per image of the loaders' read + augmentation, overlapped with "
             f"the compute by {result['workers']['train']} loader workers (train jobs) / "
             f"{result['workers']['evaluate']} (evaluate jobs); 0 workers: added to it. Frozen cells: the "
             "validation cache's budget decides how many episodes later passes take from the cache. BAM base "
             f"learners: {result['base_learners']}. Kinds timed: {result['timed']}, inferred: {result['inferred']}"
             f" (timing took {result['timing_s']:.0f} s" + (f" of a {result['budget_s']:.0f} s budget)."
                                                             if result.get("budget_s") else ")."), ""]
    head = "| table | cells | " + " | ".join(f"device-hours {p} | with early stop {p}" for p in labels) + " |"
    lines += [head, "|:--|--:|" + "--:|--:|" * len(labels)]
    for name in result["tables"] + ["all"]:
        part = frame if name == "all" else frame[frame["tables"].str.split().apply(lambda t, n=name: n in t)]
        main = part[part["method"] != BASE_LEARNER]
        n = int(main[main["precision"] == labels[0]]["cells"].sum())
        values = " | ".join(f"{_hours(part[part['precision'] == p]['hours'].sum())} | "
                            f"{_hours(part[part['precision'] == p]['early_stop_hours'].sum())}" for p in labels)
        has_base = bool((part["method"] == BASE_LEARNER).any())
        title = (f"**all (each cell once{', base learners included' if has_base else ''})**" if name == "all"
                 else f"{name}{' (+ its base learners)' if has_base else ''}")
        lines.append(f"| {title} | {n} | {values} |")
    for p in labels:
        mine = frame[frame["precision"] == p]
        peak = mine["peak_gb"].max()
        lines.append(f"\n{p}: every kind fits in device memory: {bool(mine['fits'].all())}, in 80 GB: "
                     f"{bool(mine['fits_80gb'].all())} ("
                     + ("no device memory on the CPU" if math.isnan(peak) else f"largest peak {peak:.1f} GB") + ").")
    if comparison:
        lines += ["", "Against the measured jobs (Snakemake benchmark files, wall seconds):", "",
                  "| jobs | count | estimated h | measured h | error |", "|:--|--:|--:|--:|--:|"]
        for job, v in comparison.items():
            lines.append(f"| {job} | {v['jobs']} | {v['estimated_h']:.4f} | {v['measured_h']:.4f} | "
                         f"{v['error']:+.0%} |")
    lines += ["", "| kind | cells | precision | timed | crop | micro-batch | step s | step + loading s | val s/episode "
              "| cached episodes | peak GB | TFLOP/s | h/cell |", "|:--|--:|:--|:--|" + "--:|" * 9]
    for r in frame.itertuples():
        kind = "/".join(str(getattr(r, k)) for k in KIND_KEYS if getattr(r, k) not in ("", 0))
        lines.append(f"| {kind} | {r.cells} | {r.precision} | {r.timed} | {r.crop} | {r.micro_batch} | "
                     f"{r.step_s:.3f} | {r.step_with_loading_s:.3f} | {r.val_episode_s:.4f} | {r.cached_episodes} | "
                     f"{r.peak_gb:.1f} | {r.achieved_tflops:.0f} | {_hours(r.hours_per_cell)} |")
    return lines


__all__ = ["compare_measured", "estimate_lines", "write_estimate"]
