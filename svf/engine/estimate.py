"""``svf estimate``: what the paper costs on *your* device, measured on synthetic tensors at the config's sizes.

For every distinct kind of cell of the requested tables (dataset, backbone, method, setting, policy, recipe, shot;
folds and seeds share a kind), build the cell's model with random weights (no download), run a few training steps
on random episodes at the recipe's crop, batch, loss groups, micro-batch and precision, and a few validation
batches at its val_size, and record seconds per step, seconds per validation episode and peak device memory. Then
project device-hours per cell:

    train = epochs x steps_per_epoch x step_s
    validation = (epochs [+ epochs, mid-epoch]) x val_episodes x s_per_val_episode (frozen cells: the first pass,
                 then the head only on cached features, measured too)
    test = protocol episodes x s_per_test_episode

steps_per_epoch = training images of the fold list / batch_size (PASCAL: the authors' published lists; COCO: from
``--splits`` when given, else the assumption ``COCO_TRAIN_IMAGES``). Early stopping is not assumed (an upper bound);
``early_stop_hours`` assumes the best epoch at a third of the schedule, so a run stops 75 epochs later.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch

from ..data.datasets import SPLITS_SUMMARY
from ..pipeline.cells import DEFAULT_SEED, Cell
from ..pipeline.specs import cell_spec
from ..pipeline.tables import cells_of, load_tables
from .batching import Grouping
from .build import build_cell_model, random_base_learner
from .device import library_versions, setup_process
from .feature_cache import backbone_is_frozen
from .loaders import protocol_runs
from .loop import train_step
from .precision import Precision
from .train import cell_step, head_parameters

REFERENCE = Path(__file__).resolve().parents[2] / "config" / "reference_splits" / "summary.json"
#: Assumed COCO-20i training images per fold list when no splits are given (not measured here: the real COCO
#: lists need the download). About 3/4 of the 82,081 annotated train2014 images hold a base class.
COCO_TRAIN_IMAGES = 61_500
KIND_KEYS = ("dataset", "backbone", "method", "setting", "policy", "recipe", "shot")


def distinct_kinds(config: dict, names) -> list[dict]:
    """One entry per kind: its cell parameters, how many cells (folds x seeds) and which tables use it."""
    tables = load_tables(config["tables"]["file"])
    seeds = config["tables"].get("seeds") or [config.get("seed", DEFAULT_SEED)]
    kinds: dict[tuple, dict] = {}
    restrict = {"folds": config["tables"].get("folds"), "shots": config["tables"].get("shots")}
    for name in names:
        for cell in cells_of(tables, [name], seeds=seeds, **restrict):
            key = tuple(cell[k] for k in KIND_KEYS)
            kind = kinds.setdefault(key, {**{k: cell[k] for k in KIND_KEYS}, "cells": set(), "tables": []})
            kind["cells"].add((cell["fold"], cell["seed"]))
            if name not in kind["tables"]:
                kind["tables"].append(name)
    return [{**k, "cells": len(k["cells"])} for k in kinds.values()]


def _episodes(n: int, shot: int, size: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.zeros(n, size, size, dtype=torch.long)
    label[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return {"query": torch.randn(n, 3, size, size, generator=g).to(device),
            "supports": torch.randn(n, shot, 3, size, size, generator=g).to(device),
            "support_labels": label[:, None].expand(n, shot, size, size).contiguous().to(device),
            "query_label": label.to(device), "query_label_full": label.to(device),
            "class_id": torch.full((n,), 1, dtype=torch.long).to(device)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_kind(spec: dict, device: torch.device, steps: int = 3, warmup: int = 1, val_batches: int = 2,
              scratch: Path | None = None) -> dict:
    """Seconds per training step and per validation/test episode, peak memory, for one cell spec."""
    recipe = spec["recipe"]
    base = random_base_learner(spec, scratch) if spec["cell"]["method"] == "bam" else None
    model, policy = build_cell_model(spec, None, base)
    precision = Precision.of(recipe)
    model = precision.place(model, device)
    if spec["cell"]["method"] == "bam":
        model.share_frozen_backbone()
    grouping = Grouping.of(recipe)
    step, scaler = cell_step(model, grouping), precision.scaler(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params or head_parameters(model), lr=1e-6, momentum=0.9)
    batch = precision.prepare_batch(_episodes(int(recipe["batch_size"]), spec["cell"]["shot"], int(recipe["crop"]),
                                              device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    model.train()
    for i in range(warmup + steps):
        _sync(device)
        started = time.perf_counter()
        train_step(optimizer, batch, step, grouping.micro, precision, scaler, device)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    val_n = int(spec["evaluation"].get("batch_size", 8))
    val = precision.prepare_batch(_episodes(val_n, spec["cell"]["shot"], int(recipe["val_size"]), device))
    model.eval()
    full, head = [], []
    with torch.no_grad():
        for i in range(val_batches + 1):
            _sync(device)
            started = time.perf_counter()
            with precision.autocast(device):
                inputs = model.backbone_inputs(val["query"], val["supports"], val["support_labels"])
                _sync(device)
                middle = time.perf_counter()
                model.head(inputs, val["query"].shape[-2:], None)
            _sync(device)
            if i:  # the first is a warm-up
                full.append((time.perf_counter() - started) / val_n)
                head.append((time.perf_counter() - middle) / val_n)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return {"step_s": statistics.median(times), "val_episode_s": statistics.median(full),
            "cached_val_episode_s": statistics.median(head) if backbone_is_frozen(model, policy) else math.nan,
            "peak_gb": peak, "micro_batch": grouping.micro, "precision": precision.name}


def train_images(dataset: str, setting: str, fold: int, splits: dict[str, str] | None) -> int:
    if splits and dataset in splits:
        summary = json.loads((Path(splits[dataset]) / SPLITS_SUMMARY).read_text())
        return int(summary["files"][f"{setting}/train/fold{fold}"]["images"])
    if dataset == "pascal":
        return int(json.loads(REFERENCE.read_text())[f"{setting}/train/fold{fold}"]["images"])
    return COCO_TRAIN_IMAGES


def project(kind: dict, timing: dict, spec: dict, splits: dict[str, str] | None) -> dict:
    recipe = spec["recipe"]
    images = statistics.mean(train_images(kind["dataset"], kind["setting"], f, splits) for f in range(4))
    cap = recipe.get("max_episodes_per_epoch")
    steps = int(min(images, cap) if cap else images) // int(recipe["batch_size"])
    epochs = int(recipe["epochs"])
    passes = epochs * (2 if recipe.get("mid_epoch_val") else 1)
    val = int(recipe["val_episodes"])
    if math.isnan(timing["cached_val_episode_s"]):
        val_s = passes * val * timing["val_episode_s"]
    else:  # the first pass computes the backbone, the others run the head on the cache
        val_s = val * timing["val_episode_s"] + (passes - 1) * val * timing["cached_val_episode_s"]
    test_s = sum(n for _, n in protocol_runs(spec)) * timing["val_episode_s"]
    train_s = epochs * steps * timing["step_s"]
    hours = (train_s + val_s + test_s) / 3600
    stop = recipe.get("early_stop")
    kept = min(1.0, (epochs / 3 + stop) / epochs) if stop else 1.0
    return {"steps_per_epoch": steps, "epochs": epochs, "validations": passes, "hours_per_cell": hours,
            "early_stop_hours_per_cell": (train_s + val_s) * kept / 3600 + test_s / 3600,
            "hours": hours * kind["cells"], "early_stop_hours": (train_s + val_s) * kept / 3600 * kind["cells"]
            + test_s / 3600 * kind["cells"]}


def estimate(config: dict, names=None, device: str = "auto", steps: int = 3, splits: dict[str, str] | None = None,
             threads: int | None = None, progress=print) -> dict:
    import tempfile

    dev = setup_process(threads, device, False)
    names = list(names or config["tables"]["build"])
    kinds = distinct_kinds(config, names)
    total_memory = (torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.type == "cuda"
                    else math.nan)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, kind in enumerate(kinds, 1):
            spec = cell_spec(config, Cell(**{k: kind[k] for k in KIND_KEYS}, fold=0))
            timing = time_kind(spec, dev, steps=steps, scratch=Path(scratch))
            row = {**{k: kind[k] for k in KIND_KEYS}, "cells": kind["cells"], "tables": " ".join(kind["tables"]),
                   "crop": spec["recipe"]["crop"], "batch_size": spec["recipe"]["batch_size"], **timing,
                   "fits": bool(math.isnan(timing["peak_gb"]) or timing["peak_gb"] < total_memory),
                   **project(kind, timing, spec, splits)}
            rows.append(row)
            progress(f"[{i}/{len(kinds)}] {'/'.join(str(kind[k]) for k in KIND_KEYS)}: step {timing['step_s']:.3f} s, "
                     f"peak {timing['peak_gb']:.1f} GB, {row['hours_per_cell']:.1f} h per cell")
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return {"device": str(dev), "device_name": library_versions(dev).get("gpu") or "cpu",
            "device_memory_gb": total_memory, "tables": names, "rows": rows, "versions": library_versions(dev),
            "splits": splits}


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.3f}"


def write_estimate(result: dict, out_dir: str | Path) -> list[Path]:
    import pandas as pd

    from ..files import atomic_write, write_text

    out = Path(out_dir)
    frame = pd.DataFrame(result["rows"])
    paths = [atomic_write(out / "estimate.csv", lambda tmp: frame.round(5).to_csv(tmp, index=False))]
    lines = [f"# Cost estimate on {result['device_name']} ({result['device']}, "
             f"{result['device_memory_gb']:.0f} GB)" if not math.isnan(result["device_memory_gb"])
             else f"# Cost estimate on {result['device_name']} ({result['device']})", "",
             "Measured on synthetic tensors at each recipe's crop, batch and precision (svf/engine/estimate.py); "
             "projected over the recipe's epochs with every epoch run (early_stop: best epoch assumed at a third "
             "of the schedule, then 75 more). COCO training lists: "
             f"{'from the given splits' if result.get('splits') else f'{COCO_TRAIN_IMAGES:,} images per fold (assumed)'}.",
             "", "| table | cells | device-hours | with early stop |", "|:--|--:|--:|--:|"]
    for name in result["tables"]:
        part = frame[frame["tables"].str.split().apply(lambda t, n=name: n in t)]
        lines.append(f"| {name} | {int(part['cells'].sum())} | {_hours(part['hours'].sum())} | "
                     f"{_hours(part['early_stop_hours'].sum())} |")
    lines.append(f"| **all (each cell once)** | {int(frame['cells'].sum())} | {_hours(frame['hours'].sum())} | "
                 f"{_hours(frame['early_stop_hours'].sum())} |")
    lines += ["", f"Every kind fits in device memory: {bool(frame['fits'].all())}"
              f" (largest peak {frame['peak_gb'].max():.1f} GB).", "",
              "| kind | cells | crop | micro-batch | step s | val s/episode | peak GB | h/cell |",
              "|:--|--:|--:|--:|--:|--:|--:|--:|"]
    for r in frame.itertuples():
        kind = f"{r.dataset}/{r.backbone}/{r.method}/{r.setting}/{r.policy}/{r.recipe}/{r.shot}shot"
        lines.append(f"| {kind} | {r.cells} | {r.crop} | {r.micro_batch} | {r.step_s:.3f} | {r.val_episode_s:.4f} | "
                     f"{r.peak_gb:.1f} | {_hours(r.hours_per_cell)} |")
    paths.append(write_text(out / "estimate.md", "\n".join(lines) + "\n"))
    return paths


__all__ = ["distinct_kinds", "estimate", "project", "time_kind", "write_estimate"]
