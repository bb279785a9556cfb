"""DataLoaders of a cell, built from its spec and the prepared dataset + splits (svf.data)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ...data import episodes
from ...data.transforms import TrainAug
from ...pipeline.recipe import Recipe
from ...pipeline.spec_types import CellSpec
from . import protocols


def loader_workers(device_type: str | None = None, threads: int | None = None) -> int:
    """Background loader processes: none on the CPU (the cores compute), a few when a GPU computes (one fewer than
    the job's threads, at most 8; ``threads`` default: this process's torch threads)."""
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type != "cuda":
        return 0
    return max(0, min(8, (threads or torch.get_num_threads()) - 1))


def train_aug(recipe: Recipe) -> TrainAug:
    return TrainAug(crop=(recipe.crop, recipe.crop), scale=recipe.scale, rotate=recipe.rotate)


def train_loader(spec: CellSpec, dataset_root: str, splits_dir: str) -> DataLoader:
    cell, recipe = spec.cell, spec.recipe
    dataset = episodes.train_episodes(
        dataset_root, splits_dir, cell.setting, cell.fold, cell.shot, aug=train_aug(recipe), seed=spec.seed,
        max_episodes=recipe.max_episodes_per_epoch, coco_split=spec.data.coco_split,
        exif_orientation=spec.data.exif_orientation)
    workers = loader_workers()
    # The dataset fixes the order of each epoch itself (set_epoch), so no sampler shuffling here.
    return DataLoader(dataset, batch_size=recipe.batch_size, shuffle=False, drop_last=True,
                      num_workers=workers, collate_fn=episodes.collate_episodes,
                      pin_memory=torch.cuda.is_available())


def eval_loader(spec: CellSpec, dataset_root: str, splits_dir: str, n_episodes: int, seed: int,
                batch_size: int | None = None, split: str = "val") -> DataLoader:
    """Episodes of the fold's test list (``split="val"``) or of its held-out selection list (``"holdout"``)."""
    cell = spec.cell
    dataset = episodes.eval_episodes(
        dataset_root, splits_dir, cell.setting, cell.fold, cell.shot, seed=int(seed), n_episodes=int(n_episodes),
        size=spec.recipe.val_size, coco_split=spec.data.coco_split, exif_orientation=spec.data.exif_orientation,
        split=split)
    workers = loader_workers()
    # A fixed episode list: its workers can live across the validations of every epoch (no restart per pass).
    return DataLoader(dataset, batch_size=batch_size or spec.evaluation.batch_size, shuffle=False,
                      num_workers=workers, collate_fn=episodes.collate_episodes,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


# Where a cell's in-training validation episodes come from (recipe key ``val_source``): ``test`` = the first
# ``val_episodes`` of the test list, as the authors' validate(); ``holdout`` = the fold's held-out list, which no test
# episode uses (the study's selection; svf/data/splits.py).
VAL_SOURCES = {"test": "val", "holdout": "holdout"}


def validation_loader(spec: CellSpec, dataset_root: str, splits_dir: str) -> DataLoader:
    """The in-training validation episodes of a cell: the same for every training seed (``val_seed``)."""
    recipe = spec.recipe
    if recipe.val_source not in VAL_SOURCES:
        raise ValueError(f"recipe {recipe.name!r}: val_source {recipe.val_source!r} is not one of "
                         f"{sorted(VAL_SOURCES)}")
    return eval_loader(spec, dataset_root, splits_dir, n_episodes=recipe.val_episodes, seed=spec.val_seed,
                       split=VAL_SOURCES[recipe.val_source])


def fold_novel_classes(spec: CellSpec) -> list[int]:
    return list(spec.classes.novel)


def protocol_runs(spec: CellSpec) -> list[tuple[int, int]]:
    """``[(seed, episodes), ...]`` of the cell's evaluation protocol (episode count overridable in config)."""
    return protocols.protocol_runs(spec.evaluation.protocol, spec.cell.dataset, spec.evaluation.episodes)
