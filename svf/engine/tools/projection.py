"""The projection of ``svf estimate``: a kind of cell's device-hours from its measured timings, the sizes of its
training lists and the loaders' cost per image (:mod:`svf.engine.tools.estimate` measures, this module adds up).

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
later.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ...data.datasets import SPLITS_SUMMARY
from ...data.splits import DEFAULT_REFERENCE_DIR
from ...pipeline.spec_types import BaseLearnerSpec, CellSpec
from ..tasks.loaders import protocol_runs

REFERENCE = DEFAULT_REFERENCE_DIR / "summary.json"
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


def project(kind: dict, timing: dict, spec: CellSpec, config: dict, splits: dict[str, str] | None, loading: dict,
            workers: dict[str, int]) -> dict:
    """Device-hours of a kind's cells (see the module docstring). ``loading``: seconds per training and per
    validation image (``train_image_s``, ``val_image_s``); ``workers``: loader workers of the train and evaluate
    jobs."""
    recipe, shot = spec.recipe, int(kind["shot"])
    epochs, batch = recipe.epochs, recipe.batch_size
    cap = recipe.max_episodes_per_epoch
    step = _with_loading(timing["step_s"], batch * (1 + shot) * loading["train_image_s"], workers["train"])
    val_load = (1 + shot) * loading["val_image_s"]
    val_ep = _with_loading(timing["val_episode_s"], val_load, workers["train"])
    test_ep = _with_loading(timing["val_episode_s"], val_load, workers["evaluate"])
    passes = epochs + (max(0, epochs - 1) if recipe.mid_epoch_val else 0)
    episodes = recipe.val_episodes
    cached = 0
    budget = recipe.val_cache_gb * 2**30
    if not math.isnan(timing["cached_val_episode_s"]) and budget > 0:
        cached = min(episodes, int(budget // max(timing["cache_bytes_per_episode"], 1.0)))
        later = cached * timing["cached_val_episode_s"] + (episodes - cached) * val_ep
        val_s = episodes * val_ep + (passes - 1) * later
    else:
        val_s = passes * episodes * val_ep
    test_s = sum(n for _, n in protocol_runs(spec)) * test_ep + timing["build_s"]
    stop = recipe.early_stop
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


def project_base_learner(kind: dict, timing: dict, spec: BaseLearnerSpec, config: dict, loading: dict,
                         workers: int) -> dict:
    """BAM's stage 1 per fold: the whole train list (capped) every epoch, the val list (``base_val_images``) after
    each."""
    recipe = spec.recipe
    epochs, batch = recipe.epochs, recipe.batch_size
    train, val = full_lists(kind["dataset"], config)
    cap, val_cap = recipe.max_episodes_per_epoch, recipe.base_val_images
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


__all__ = ["COCO_DAGGER_TRAIN_IMAGES", "COCO_ORIGINAL_TRAIN_IMAGES", "full_lists", "image_hw", "project",
           "project_base_learner", "train_images"]
