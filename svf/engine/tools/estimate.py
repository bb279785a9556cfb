"""``svf estimate``: what the paper costs on *your* device, measured on synthetic tensors at the config's sizes.

For every distinct kind of cell of the requested tables (dataset, backbone, method, setting, policy, recipe, shot;
folds and seeds share a kind) and every requested precision, :func:`svf.engine.tools.timing.time_kind` measures a
training step, a validation episode (whole, and the head alone on cached features), the peak memory, the bytes one
cached episode takes and the model's build; kinds that differ only in what does not change a step (the setting, a
recipe's schedule) share one timing. BAM's base learners are timed too when the config trains them. The loaders'
read + augmentation is measured per image (:class:`svf.engine.tools.timing.LoadingCosts`).
:mod:`svf.engine.tools.projection` turns the timings into device-hours (its docstring has the arithmetic and the
list sizes it assumes) and :mod:`svf.engine.tools.estimate_report` writes them out.

A time budget (``budget_s``) stops the timing; kinds left untimed are then inferred and say so (``timed``):
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

from ...pipeline.cells import CELL_KEYS, Cell
from ...pipeline.recipe import Recipe
from ...pipeline.spec_types import BaseLearnerSpec, CellSpec
from ...pipeline.specs import build_base_learner_spec, build_cell_spec
from ...pipeline.tables import config_cells, load_tables, primary_seed_cells
from ...policy import parse_policy
from ..loop.device import library_versions, setup_process
from ..loop.precision import Precision
from ..tasks.build import random_base_learner
from ..tasks.loaders import loader_workers, train_aug
from .projection import image_hw, project, project_base_learner
from .timing import LoadingCosts, ModelBuilds, parse_precision, precision_label, time_base_learner, time_kind

#: What makes a kind of cell: a cell's parameters but its fold and seed (which share one timing).
KIND_KEYS = tuple(k for k in CELL_KEYS if k not in ("fold", "seed"))
BASE_LEARNER = "base-learner"  # the method column of BAM's stage-1 rows
#: Precision columns: ``config`` is each recipe's own precision.
DEFAULT_PRECISIONS = ("config", "bf16-cl")


def distinct_kinds(config: dict, names, tables: dict | None = None) -> list[dict]:
    """One entry per kind: its cell parameters, its cells as (fold, seed) pairs, how many, which tables use it
    (``tables``: an already loaded tables document instead of ``config["tables"]["file"]``). Under a study config
    the primary rows' extra seeds count too, as ``snakemake study`` trains them."""
    tables = tables or load_tables(config["tables"]["file"])
    kinds: dict[tuple, dict] = {}
    for name in names:
        for cell in config_cells(config, tables, [name]) + primary_seed_cells(config, tables, [name]):
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


# --- timing every kind within a budget, inferring the rest -------------------------------------------------------

TIMED_FIELDS = ("step_s", "val_episode_s", "cached_val_episode_s", "cache_bytes_per_episode", "peak_gb")


def _timing_key(spec: CellSpec | BaseLearnerSpec) -> str:
    """What a step's cost depends on besides the precision: kinds equal in it share one timing."""
    cell = isinstance(spec, CellSpec)
    return json.dumps({"model": spec.model.to_json(), "rank": spec.rank if cell else None,
                       "method": spec.cell.method if cell else BASE_LEARNER,
                       "policy": spec.cell.policy if cell else None,
                       "evaluation": spec.evaluation.batch_size if cell else None,
                       "recipe": {k: getattr(spec.recipe, k) for k in ("crop", "batch_size", "loss_groups",
                                                                       "micro_batch", "val_size")}},
                      sort_keys=True, default=str)


def _cost_rank(spec: CellSpec | BaseLearnerSpec) -> float:
    """A rough size of a step, to time the heaviest kinds first (their memory is the question)."""
    cell = spec.cell if isinstance(spec, CellSpec) else None
    trains = cell is None or _backbone_trains(cell.policy)
    shot = cell.shot if cell is not None else 0
    return spec.recipe.crop ** 2 * (1 + shot) * spec.recipe.batch_size * (2 if trains else 1)


def _backbone_trains(policy: str) -> bool:
    return parse_policy(policy).kind != "frozen"


def _resolve_precision(label: str, recipe: Recipe) -> Precision:
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
            spec = (build_base_learner_spec(config, kind["dataset"], kind["backbone"], 0) if is_base
                    else build_cell_spec(config, Cell(**{k: kind[k] for k in KIND_KEYS}, fold=0)))
            kind["trains"] = is_base or _backbone_trains(kind["policy"])
            label = "/".join(str(kind[k]) for k in KIND_KEYS if kind[k] not in ("", 0))
            for p in precisions:
                precision = _resolve_precision(p, spec.recipe)
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
    base = random_base_learner(spec, scratch) if spec.cell.method == "bam" else None
    return time_kind(spec, dev, steps=steps, base_learner=base, builds=builds, flops=flops, precision=precision,
                     label_size=max(image_hw(entry["kind"]["dataset"], config)))


def _row(entry: dict, config: dict, splits, loading_costs: LoadingCosts, workers: dict, total_memory: float) -> dict:
    kind, spec, timing = entry["kind"], entry["spec"], entry["timing"]
    recipe, hw = spec.recipe, image_hw(kind["dataset"], config)
    loading = {"train_image_s": loading_costs.train_image_s(hw, train_aug(recipe)),
               "val_image_s": loading_costs.val_image_s(hw, recipe.val_size)}
    if entry["is_base"]:
        projected = project_base_learner(kind, timing, spec, config, loading, workers["train_base"])
    else:
        projected = project(kind, timing, spec, config, splits, loading, workers)
    peak = timing["peak_gb"]
    flops = timing.get("step_flops", math.nan)
    return {**{k: kind[k] for k in KIND_KEYS}, "cells": kind["cells"] or len(kind["fold_seeds"]),
            "tables": " ".join(kind["tables"]), "crop": recipe.crop, "batch_size": recipe.batch_size,
            "precision": entry["precision"], "precision_column": entry["precision_label"], "timed": entry["timed"],
            "fold_seeds": kind["fold_seeds"],
            **{k: v for k, v in timing.items() if k != "precision"},
            "achieved_tflops": flops / timing["step_s"] / 1e12 if flops == flops else math.nan,
            "train_image_s": loading["train_image_s"], "val_image_s": loading["val_image_s"],
            "fits": bool(math.isnan(peak) or math.isnan(total_memory) or peak < total_memory),
            "fits_80gb": bool(math.isnan(peak) or peak < 80),
            **projected}


__all__ = ["BASE_LEARNER", "DEFAULT_PRECISIONS", "KIND_KEYS", "base_learner_kinds", "distinct_kinds", "estimate"]
