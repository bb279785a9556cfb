"""``svf estimate``: what the paper costs on *your* device, measured on synthetic tensors at the config's sizes.

For every distinct kind of cell of the requested tables (dataset, backbone, method, setting, policy, recipe, shot;
folds and seeds share a kind) and every requested precision, :func:`svf.engine.tools.timing.time_kind` measures a
training step, a validation episode (whole, and the head alone on cached features), the peak memory, the bytes one
cached episode takes and the model's build; kinds that differ only in what does not change a step (the setting, a
recipe's schedule) share one timing. BAM's base learners are timed too when the config trains them. The loaders'
read + augmentation is measured per image (:class:`svf.engine.tools.timing.LoadingCosts`). The projection, per cell:

    train job    = build + epochs x steps_per_epoch x step + validation passes
    step         = max(compute, loading / W) with W loader workers (a GPU job: min(8, threads - 1)); on the CPU
                   (W = 0) compute + loading; loading = batch x (1 + K) images x seconds per image
    validation   = passes x episodes x max(compute, (1 + K) images / W) (CPU: the sum); passes = epochs, plus one
                   mid-epoch pass in every epoch but the first when the recipe has it. Frozen backbones: the first
                   pass whole, later ones run the head alone (no loading) on the C episodes the cache holds,
                   C = min(episodes, val_cache_gb / bytes per episode), and the whole model on the others
    evaluate job = build + protocol episodes x episode (W of the evaluate job's threads)
    base learner = build + epochs x (train list // batch) x step + epochs x val images x image (BAM's stage 1)

steps_per_epoch = training images of the fold's list (capped by ``max_episodes_per_epoch``) // batch_size. Lists:
``--splits`` when given; else PASCAL's from the authors' published lists, COCO's † lists from BAM's published
fold lists (``COCO_DAGGER_TRAIN_IMAGES``), COCO's original (PFENet) lists assumed (``COCO_ORIGINAL_TRAIN_IMAGES``:
PFENet builds them at run time); synthetic data: the config's image counts. Every epoch is assumed to run (an upper
bound); ``early_stop_hours`` assumes the best epoch at a third of the schedule, so a run stops ``early_stop`` epochs
later. A time budget (``budget_s``) stops the timing; kinds left untimed are then inferred and say so (``timed``):
in another precision from a timed one times the median ratio between the precisions over kinds timed in both;
otherwise as the nearest timed kind (same dataset, backbone, method, shot and whether the backbone trains, then
looser).
"""
from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ...data.datasets import SPLITS_SUMMARY
from ...pipeline.cells import DEFAULT_SEED, Cell
from ...pipeline.specs import base_learner_spec, cell_spec
from ...pipeline.tables import cells_of, load_tables
from ...policy import parse_policy
from ..tasks.build import random_base_learner
from ..loop.device import library_versions, setup_process
from ..tasks.loaders import loader_workers, protocol_runs, train_aug
from .timing import (LoadingCosts, ModelBuilds, parse_precision, precision_label, time_base_learner, time_kind)
from ..loop.precision import Precision

REFERENCE = Path(__file__).resolve().parents[3] / "config" / "reference_splits" / "summary.json"
#: BAM's published COCO-20i training lists (its fss_list/train/data_list_{0..3}.txt): images per fold; the †
#: setting (docs/sources.md#coco-20i-fold-lists).
COCO_DAGGER_TRAIN_IMAGES = (21_917, 41_809, 43_045, 44_614)
#: PFENet builds its COCO fold lists at run time and publishes none: an assumption (about 3/4 of the 82,081
#: annotated train2014 images hold a base class), used for the `original` setting without --splits.
COCO_ORIGINAL_TRAIN_IMAGES = 61_500
#: The whole lists BAM's base learner reads, (train, val) images (docs/episodes.md).
FULL_LISTS = {"pascal": (5_953, 1_449), "coco": (82_081, 40_137)}
#: Image size (height, width) of the loading model: PASCAL's typical 375 x 500, COCO's 480 x 640.
IMAGE_HW = {"pascal": (375, 500), "coco": (480, 640)}
CLASSES = {"pascal": 20, "coco": 80}
KIND_KEYS = ("dataset", "backbone", "method", "setting", "policy", "recipe", "shot")
BASE_LEARNER = "base-learner"  # the method column of BAM's stage-1 rows
#: Precision columns: ``config`` is each recipe's own precision.
DEFAULT_PRECISIONS = ("config", "bf16-cl")


def distinct_kinds(config: dict, names, tables: dict | None = None) -> list[dict]:
    """One entry per kind: its cell parameters, its cells as (fold, seed) pairs, how many, which tables use it
    (``tables``: an already loaded tables document instead of ``config["tables"]["file"]``)."""
    tables = tables or load_tables(config["tables"]["file"])
    seeds = config["tables"].get("seeds") or [config.get("seed", DEFAULT_SEED)]
    kinds: dict[tuple, dict] = {}
    restrict = {"folds": config["tables"].get("folds"), "shots": config["tables"].get("shots")}
    for name in names:
        for cell in cells_of(tables, [name], seeds=seeds, **restrict):
            key = tuple(cell[k] for k in KIND_KEYS)
            kind = kinds.setdefault(key, {**{k: cell[k] for k in KIND_KEYS}, "fold_seeds": set(), "tables": []})
            kind["fold_seeds"].add((cell["fold"], cell["seed"]))
            if name not in kind["tables"]:
                kind["tables"].append(name)
    return [{**k, "fold_seeds": sorted(k["fold_seeds"]), "cells": len(k["fold_seeds"])} for k in kinds.values()]


def base_learner_kinds(config: dict, kinds: list[dict]) -> list[dict]:
    """BAM's stage-1 jobs the DAG trains (none with ``weights.bam_base_learner: published``): one per (dataset,
    backbone, fold) of the BAM kinds."""
    if config["weights"].get("bam_base_learner", "train") != "train":
        return []
    out: dict[tuple, dict] = {}
    for kind in kinds:
        if kind["method"] == "bam":
            entry = out.setdefault((kind["dataset"], kind["backbone"]),
                                   {"dataset": kind["dataset"], "backbone": kind["backbone"], "method": BASE_LEARNER,
                                    "setting": "", "policy": "", "recipe": "bam-base", "shot": 0, "folds": set(),
                                    "tables": []})
            entry["folds"].update(f for f, _ in kind["fold_seeds"])
            entry["tables"] += [t for t in kind["tables"] if t not in entry["tables"]]
    return [{**e, "fold_seeds": [(f, None) for f in sorted(e.pop("folds"))], "cells": 0} for e in out.values()]


# --- list sizes ----------------------------------------------------------------------------------------------------

def train_images(dataset: str, setting: str, fold: int, splits: dict[str, str] | None, config: dict | None = None
                 ) -> tuple[int, str]:
    """(training images of a fold list, where the number comes from)."""
    if splits and dataset in splits:
        summary = json.loads((Path(splits[dataset]) / SPLITS_SUMMARY).read_text())
        return int(summary["files"][f"{setting}/train/fold{fold}"]["images"]), "splits"
    if config is not None and config["data"].get("source") == "synthetic":
        return full_lists(dataset, config)[0], "synthetic (whole train list)"
    if dataset == "pascal":
        return int(json.loads(REFERENCE.read_text())[f"{setting}/train/fold{fold}"]["images"]), "published"
    if setting == "dagger":
        return COCO_DAGGER_TRAIN_IMAGES[int(fold)], "published (BAM)"
    return COCO_ORIGINAL_TRAIN_IMAGES, "assumed"


def full_lists(dataset: str, config: dict) -> tuple[int, int]:
    """(train, val) images of the dataset's whole lists: the real ones, or the synthetic data's from the config."""
    synthetic = config["data"].get("synthetic", {}).get(dataset)
    if config["data"].get("source") == "synthetic" and synthetic:
        classes = CLASSES[dataset]
        return int(synthetic["train_per_class"]) * classes, int(synthetic["val_per_class"]) * classes
    return FULL_LISTS[dataset]


def image_hw(dataset: str, config: dict) -> tuple[int, int]:
    synthetic = config["data"].get("synthetic", {}).get(dataset)
    if config["data"].get("source") == "synthetic" and synthetic:
        return int(synthetic["size"]), int(synthetic["size"])
    return IMAGE_HW[dataset]


# --- the projection ----------------------------------------------------------------------------------------------

def _with_loading(compute_s: float, loading_s: float, workers: int) -> float:
    """Seconds of a step or episode whose data ``loading_s`` (one thread) overlaps the compute on ``workers``
    processes; on the CPU (no workers) the main process loads, then computes."""
    return max(compute_s, loading_s / workers) if workers else compute_s + loading_s


def project(kind: dict, timing: dict, spec: dict, config: dict, splits: dict[str, str] | None, loading: dict,
            workers: dict[str, int]) -> dict:
    """Device-hours of a kind's cells (see the module docstring). ``loading``: seconds per training and per
    validation image (``train_image_s``, ``val_image_s``); ``workers``: loader workers of the train and evaluate
    jobs."""
    recipe, shot = spec["recipe"], int(kind["shot"])
    epochs, batch = int(recipe["epochs"]), int(recipe["batch_size"])
    cap = recipe.get("max_episodes_per_epoch")
    step = _with_loading(timing["step_s"], batch * (1 + shot) * loading["train_image_s"], workers["train"])
    val_load = (1 + shot) * loading["val_image_s"]
    val_ep = _with_loading(timing["val_episode_s"], val_load, workers["train"])
    test_ep = _with_loading(timing["val_episode_s"], val_load, workers["evaluate"])
    passes = epochs + (max(0, epochs - 1) if recipe.get("mid_epoch_val") else 0)
    episodes = int(recipe["val_episodes"])
    cached = 0
    budget = float(recipe.get("val_cache_gb", 16.0) or 0) * 2**30
    if not math.isnan(timing["cached_val_episode_s"]) and budget > 0:
        cached = min(episodes, int(budget // max(timing["cache_bytes_per_episode"], 1.0)))
        later = cached * timing["cached_val_episode_s"] + (episodes - cached) * val_ep
        val_s = episodes * val_ep + (passes - 1) * later
    else:
        val_s = passes * episodes * val_ep
    test_s = sum(n for _, n in protocol_runs(spec)) * test_ep + timing["build_s"]
    stop = recipe.get("early_stop")
    kept = min(1.0, (epochs / 3 + stop) / epochs) if stop else 1.0
    train = early = 0.0
    steps_seen = []
    for fold, _ in kind["fold_seeds"]:
        images = train_images(kind["dataset"], kind["setting"], fold, splits, config)[0]
        steps = int(min(images, cap) if cap else images) // batch
        steps_seen.append(steps)
        train_s = timing["build_s"] + epochs * steps * step + val_s
        train += train_s / 3600
        early += (train_s * kept + test_s) / 3600
    n = max(len(kind["fold_seeds"]), 1)
    hours = train + n * test_s / 3600
    return {"steps_per_epoch": round(statistics.mean(steps_seen)) if steps_seen else 0, "epochs": epochs,
            "validations": passes, "step_with_loading_s": step, "cached_episodes": cached,
            "train_hours_per_cell": train / n, "test_hours_per_cell": test_s / 3600,
            "hours_per_cell": hours / n, "early_stop_hours_per_cell": early / n, "hours": hours,
            "early_stop_hours": early}


def project_base_learner(kind: dict, timing: dict, spec: dict, config: dict, loading: dict, workers: int) -> dict:
    """BAM's stage 1 per fold: the whole train list (capped) every epoch, the val list (``base_val_images``) after
    each."""
    recipe = spec["recipe"]
    epochs, batch = int(recipe["epochs"]), int(recipe["batch_size"])
    train, val = full_lists(kind["dataset"], config)
    cap, val_cap = recipe.get("max_episodes_per_epoch"), recipe.get("base_val_images")
    steps = int(min(train, cap) if cap else train) // batch
    val = min(val, int(val_cap)) if val_cap else val
    step = _with_loading(timing["step_s"], batch * loading["train_image_s"], workers)
    image = _with_loading(timing["val_episode_s"], loading["val_image_s"], workers)
    per_fold = (timing["build_s"] + epochs * (steps * step + val * image)) / 3600
    folds = len(kind["fold_seeds"])
    return {"steps_per_epoch": steps, "epochs": epochs, "validations": epochs, "step_with_loading_s": step,
            "cached_episodes": 0, "train_hours_per_cell": per_fold, "test_hours_per_cell": 0.0,
            "hours_per_cell": per_fold, "early_stop_hours_per_cell": per_fold, "hours": per_fold * folds,
            "early_stop_hours": per_fold * folds}


# --- timing every kind within a budget, inferring the rest -------------------------------------------------------

TIMED_FIELDS = ("step_s", "val_episode_s", "cached_val_episode_s", "cache_bytes_per_episode", "peak_gb")


def _timing_key(spec: dict) -> str:
    """What a step's cost depends on besides the precision: kinds equal in it share one timing."""
    recipe = spec["recipe"]
    cell = spec.get("cell") or {}
    return json.dumps({"model": spec["model"], "rank": spec.get("rank"), "method": cell.get("method", BASE_LEARNER),
                       "policy": cell.get("policy"), "evaluation": spec.get("evaluation", {}).get("batch_size"),
                       "recipe": {k: recipe.get(k) for k in ("crop", "batch_size", "loss_groups", "micro_batch",
                                                             "val_size")}}, sort_keys=True, default=str)


def _cost_rank(spec: dict) -> float:
    """A rough size of a step, to time the heaviest kinds first (their memory is the question)."""
    recipe, cell = spec["recipe"], spec.get("cell") or {}
    trains = cell.get("policy") is None or _backbone_trains(cell["policy"])
    return int(recipe["crop"]) ** 2 * (1 + int(cell.get("shot", 0))) * int(recipe["batch_size"]) * (2 if trains else 1)


def _backbone_trains(policy: str) -> bool:
    return parse_policy(policy).kind != "frozen"


def _resolve_precision(label: str, recipe: dict) -> Precision:
    return Precision.of(recipe) if label == "config" else parse_precision(label)


def _similar(a: dict, b: dict) -> int:
    """How alike two kinds are for borrowing a timing (higher: closer)."""
    score = 0
    for weight, key in ((8, "dataset"), (4, "method"), (2, "backbone"), (1, "shot")):
        score += weight * (a[key] == b[key])
    return score + 16 * (a.get("trains") == b.get("trains"))


def _usable(value: float) -> bool:
    return not math.isnan(value) and value > 0


def _infer(entries: list[dict], precisions: list[str]) -> None:
    """Fill untimed entries in place: from another precision by the median ratio, else from the nearest kind."""
    by_key = {(e["key_base"], e["precision_label"]): e for e in entries}
    first = precisions[0]
    for label in precisions[1:]:
        pairs = [(by_key[(e["key_base"], first)]["timing"], e["timing"]) for e in entries
                 if e["precision_label"] == label and e["timing"] is not None
                 and by_key[(e["key_base"], first)]["timing"] is not None]
        for e in entries:
            base = by_key[(e["key_base"], first)]["timing"]
            if e["precision_label"] != label or e["timing"] is not None or base is None or not pairs:
                continue
            timing = dict(base)
            for field in TIMED_FIELDS:
                ratios = [p[field] / b[field] for b, p in pairs if _usable(b[field]) and _usable(p[field])]
                if ratios and _usable(timing[field]):
                    timing[field] = base[field] * statistics.median(ratios)
            timing["precision"] = e["precision"]
            e["timing"], e["timed"] = timing, f"inferred: {first} x median ratio"
    for e in entries:
        if e["timing"] is not None:
            continue
        donors = [d for d in entries if d["timing"] is not None and d["timed"] == "measured"
                  and d["precision_label"] == e["precision_label"]]
        if not donors:
            donors = [d for d in entries if d["timing"] is not None]
        if not donors:
            raise RuntimeError("svf estimate: the time budget ended before any kind was timed; raise it")
        donor = max(donors, key=lambda d: _similar(e["kind"], d["kind"]))
        e["timing"] = {**donor["timing"], "build_s": donor["timing"]["build_s"]}
        e["timed"] = f"inferred: as {donor['label']}"


def estimate(config: dict, names=None, device: str = "auto", steps: int = 3, splits: dict[str, str] | None = None,
             threads: int | None = None, progress=print, precisions=None, budget_s: float | None = None,
             flops: bool = False, tables: dict | None = None, on_row=None) -> dict:
    """Time the kinds of the tables ``names`` (default: the config's tables.build) in each of ``precisions``
    (default: each recipe's own, plus bf16-cl on a GPU) and project device-hours. ``budget_s`` bounds the timing
    (the heaviest kinds come first, both precisions of a kind together); ``on_row`` sees every timing as it is
    made (the GPU check writes it out)."""
    dev = setup_process(threads, device, False)
    names = list(names or config["tables"]["build"])
    precisions = list(precisions or (DEFAULT_PRECISIONS if dev.type == "cuda" else DEFAULT_PRECISIONS[:1]))
    kinds = distinct_kinds(config, names, tables)
    base_kinds = base_learner_kinds(config, kinds)
    total_memory = (torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.type == "cuda"
                    else math.nan)
    resources = config.get("resources", {})
    workers = {job: loader_workers(dev.type, int(resources.get(job, {}).get("threads", 1)))
               for job in ("train", "evaluate", "train_base")}
    started = time.perf_counter()
    builds, entries = ModelBuilds(), []
    loading_costs = LoadingCosts()
    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds + base_kinds:
            is_base = kind["method"] == BASE_LEARNER
            spec = (base_learner_spec(config, kind["dataset"], kind["backbone"], 0) if is_base
                    else cell_spec(config, Cell(**{k: kind[k] for k in KIND_KEYS}, fold=0)))
            kind["trains"] = is_base or _backbone_trains(kind["policy"])
            label = "/".join(str(kind[k]) for k in KIND_KEYS if kind[k] not in ("", 0))
            for p in precisions:
                precision = _resolve_precision(p, spec["recipe"])
                key = _timing_key(spec)
                entries.append({"kind": kind, "spec": spec, "label": label, "precision_label": p,
                                "precision": precision_label(precision), "timing": None, "timed": "",
                                "key_base": key, "key": f"{key}|{precision_label(precision)}", "is_base": is_base})
        timed: dict[str, dict] = {}
        order = sorted({e["key_base"] for e in entries},
                       key=lambda k: -max(_cost_rank(e["spec"]) for e in entries if e["key_base"] == k))
        for i, key_base in enumerate(order, 1):
            for e in [x for x in entries if x["key_base"] == key_base]:
                if e["key"] not in timed:
                    if timed and budget_s is not None and time.perf_counter() - started > budget_s:
                        continue  # past the budget (the heaviest kind is always timed)
                    timed[e["key"]] = _time_entry(e, dev, steps, flops, builds, Path(scratch), config)
                    if on_row:
                        on_row({"kind": e["label"], "precision": e["precision"], **timed[e["key"]]})
                    progress(f"[{i}/{len(order)}] {e['label']} {e['precision']}: step "
                             f"{timed[e['key']]['step_s']:.3f} s, peak {timed[e['key']]['peak_gb']:.1f} GB")
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                e["timing"], e["timed"] = timed[e["key"]], "measured"
        _infer(entries, precisions)
        rows = [_row(e, config, splits, loading_costs, workers, total_memory) for e in entries]
    loading_costs.close()
    return {"device": str(dev), "device_name": library_versions(dev).get("gpu") or "cpu",
            "device_memory_gb": total_memory, "tables": names, "rows": rows, "versions": library_versions(dev),
            "splits": splits, "precisions": precisions, "workers": workers,
            "base_learners": config["weights"].get("bam_base_learner", "train"),
            "timing_s": time.perf_counter() - started, "budget_s": budget_s,
            "timed": sum(r["timed"] == "measured" for r in rows),
            "inferred": sum(r["timed"] != "measured" for r in rows)}


def _time_entry(entry: dict, dev: torch.device, steps: int, flops: bool, builds: ModelBuilds, scratch: Path,
                config: dict) -> dict:
    spec, precision = entry["spec"], parse_precision(entry["precision"])
    if entry["is_base"]:
        return time_base_learner(spec, dev, steps=steps, flops=flops, precision=precision)
    base = random_base_learner(spec, scratch) if spec["cell"]["method"] == "bam" else None
    return time_kind(spec, dev, steps=steps, base_learner=base, builds=builds, flops=flops, precision=precision,
                     label_size=max(image_hw(entry["kind"]["dataset"], config)))


def _row(entry: dict, config: dict, splits, loading_costs: LoadingCosts, workers: dict, total_memory: float) -> dict:
    kind, spec, timing = entry["kind"], entry["spec"], entry["timing"]
    recipe, hw = spec["recipe"], image_hw(kind["dataset"], config)
    loading = {"train_image_s": loading_costs.train_image_s(hw, train_aug(recipe)),
               "val_image_s": loading_costs.val_image_s(hw, int(recipe["val_size"]))}
    if entry["is_base"]:
        projected = project_base_learner(kind, timing, spec, config, loading, workers["train_base"])
    else:
        projected = project(kind, timing, spec, config, splits, loading, workers)
    peak = timing["peak_gb"]
    flops = timing.get("step_flops", math.nan)
    return {**{k: kind[k] for k in KIND_KEYS}, "cells": kind["cells"] or len(kind["fold_seeds"]),
            "tables": " ".join(kind["tables"]), "crop": recipe["crop"], "batch_size": recipe["batch_size"],
            "precision": entry["precision"], "precision_column": entry["precision_label"], "timed": entry["timed"],
            "fold_seeds": kind["fold_seeds"],
            **{k: v for k, v in timing.items() if k != "precision"},
            "achieved_tflops": flops / timing["step_s"] / 1e12 if flops == flops else math.nan,
            "train_image_s": loading["train_image_s"], "val_image_s": loading["val_image_s"],
            "fits": bool(math.isnan(peak) or math.isnan(total_memory) or peak < total_memory),
            "fits_80gb": bool(math.isnan(peak) or peak < 80),
            **projected}


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
    paths = [atomic_write(out / "estimate.csv", lambda tmp: frame.round(6).to_csv(tmp, index=False))]
    paths.append(write_text(out / "estimate.md", "\n".join(estimate_lines(result, frame, comparison)) + "\n"))
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
             "training runs it (svf/engine/tools/estimate.py, svf/engine/tools/timing.py); every epoch assumed to run (early "
             "stop: best epoch at a third of the schedule, then `early_stop` more). Training lists: "
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


__all__ = ["COCO_DAGGER_TRAIN_IMAGES", "DEFAULT_PRECISIONS", "base_learner_kinds", "compare_measured",
           "distinct_kinds", "estimate", "estimate_lines", "project", "project_base_learner", "train_images",
           "write_estimate"]
