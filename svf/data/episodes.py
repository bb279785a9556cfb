"""Few-shot episodes (training and evaluation) and BAM's base-learner segmentation data.

Episode rules follow the PFENet / BAM / SVF ``SemData`` (docs/sources.md#episodes):
- one item = one query image of the fold list; the episode class is uniform among the fold's classes present in
  the query (base classes in training, novel in evaluation), however few pixels they cover (read from
  ``image_classes.json``, masks are never rescanned);
- K supports uniform without replacement from that class's pool (images where the class has >= 2048 pixels),
  the query excluded; labels binarised: class -> 1, other classes -> 0, 255 kept;
- query and each support are transformed independently.

Randomness. A training item draws from ``default_rng([_ITEM, seed, epoch, position])`` and the epoch order is a
permutation from ``default_rng([_ORDER, seed, epoch])``: the episodes of an epoch depend on (seed, epoch) only, not
on the number of DataLoader workers nor on a restart (call ``set_epoch`` before iterating; do not use
``persistent_workers``, which would keep a stale epoch in the workers). Evaluation episodes are a list fixed in
advance by :func:`make_episode_list` from one ``PCG64(seed)`` stream.

Batches (``collate_episodes``) have exactly the keys of docs/architecture.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..files import write_text
from .datasets import DEFAULT_COCO_SPLIT, DEFAULT_EXIF_ORIENTATION, fold_classes, open_dataset
from .images import PAIR_CACHE_BYTES, ImageSource, PairCache, read_pair
from .splits import fold_files, load_fold, load_image_classes
from .transforms import (
    BASE_AUG, BASE_VAL_SIZE, FEW_SHOT_AUG, VAL_SIZE, TrainAug, binarize, eval_transform, lookup,
    train_transform,
)

# Leading tags keep the seed sequences of different uses apart (SeedSequence([a, b]) == SeedSequence([a, b, 0]),
# so trailing tags would not).
_ORDER, _ITEM = 1, 2


# --- episode sampling ---------------------------------------------------------------------------------------------


class Episode(NamedTuple):
    query_id: str
    class_id: int
    support_ids: tuple[str, ...]


@dataclass(frozen=True)
class PoolInfo:
    """Where a fold's support pools come from, for error messages."""

    fold: int | str = "?"
    split: str = "?"
    path: str = "?"


def _choose_class(rng: np.random.Generator, classes: Sequence[int]) -> int:
    return int(classes[int(rng.integers(len(classes)))])


def draw_supports(rng: np.random.Generator, pool: Sequence[str], query_id: str, shot: int, class_id: int,
                  info: PoolInfo, pool_set: frozenset | set | None = None) -> tuple[str, ...]:
    """``shot`` distinct ids uniform from ``pool`` without ``query_id`` (rejection sampling as the authors)."""
    in_pool = query_id in (pool_set if pool_set is not None else pool)
    available = len(pool) - int(in_pool)
    if available < shot:
        raise DataError(f"support pool of class {class_id} (fold {info.fold}, split {info.split}, pool file "
                         f"{info.path}) has {available} image(s) besides query {query_id!r}, {shot} needed")
    chosen: list[int] = []
    while len(chosen) < shot:
        i = int(rng.integers(len(pool)))
        if pool[i] != query_id and i not in chosen:
            chosen.append(i)
    return tuple(pool[i] for i in chosen)


def _present(image_classes: dict, image_id: str, allowed: set[int], what: str) -> list[int]:
    if image_id not in image_classes:
        raise KeyError(f"image {image_id!r} of {what} is not in image_classes.json")
    classes = sorted(int(c) for c in image_classes[image_id] if int(c) in allowed)
    if not classes:
        raise DataError(f"image {image_id!r} of {what} has none of the fold's classes {sorted(allowed)} "
                         f"(image_classes.json: {sorted(int(c) for c in image_classes[image_id])})")
    return classes


def _check_pools(classes, pools: dict, info: PoolInfo) -> None:
    """Every class that can be drawn needs a non-empty pool: fail before the first episode, not at random."""
    for c in sorted(classes):
        if not pools.get(c):
            raise DataError(f"empty support pool for class {c} (fold {info.fold}, split {info.split}, pool file "
                             f"{info.path})")


def make_episode_list(val_ids: Sequence[str], image_classes: dict, pools: dict, novel_classes: Sequence[int],
                      n_episodes: int, seed: int, shot: int, info: PoolInfo = PoolInfo()) -> list[Episode]:
    """The authors' evaluation iteration: the val list in order, repeated until ``n_episodes``; per episode the
    class is uniform among the novel classes present in the query and the supports are drawn from its pool
    without the query. One ``PCG64(seed)`` stream, so the list is identical across runs and machines."""
    if not val_ids:
        raise DataError(f"empty val list (fold {info.fold}); nothing to evaluate")
    if n_episodes < 1 or shot < 1:
        raise ValueError(f"n_episodes and shot must be >= 1, got {n_episodes!r}, {shot!r}")
    rng = np.random.Generator(np.random.PCG64(seed))
    allowed = {int(c) for c in novel_classes}
    pools = {int(c): list(v) for c, v in pools.items()}
    pool_sets = {c: frozenset(v) for c, v in pools.items()}
    what = f"the val list of fold {info.fold}"
    candidates = {q: _present(image_classes, q, allowed, what) for q in dict.fromkeys(val_ids)}
    _check_pools({c for cs in candidates.values() for c in cs}, pools, info)
    episodes = []
    for i in range(n_episodes):
        query = val_ids[i % len(val_ids)]
        cls = _choose_class(rng, candidates[query])
        supports = draw_supports(rng, pools[cls], query, shot, cls, info, pool_sets[cls])
        episodes.append(Episode(query, cls, supports))
    return episodes


# --- datasets -----------------------------------------------------------------------------------------------------


def _long(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).long()


class _EpochDataset(Dataset):
    """Per-epoch shuffled order and per-item generators derived from (seed, epoch, position)."""

    def __init__(self, n_items: int, seed: int, max_items: int | None, shuffle: bool = True):
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_episodes must be >= 1 or None, got {max_items!r}")
        self.seed, self.n_items, self.shuffle = int(seed), n_items, shuffle
        self.length = n_items if max_items is None else min(n_items, int(max_items))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.shuffle:
            self.order = np.random.default_rng([_ORDER, self.seed, self.epoch]).permutation(self.n_items)
        else:
            self.order = np.arange(self.n_items)

    def __len__(self) -> int:
        return self.length

    def _item(self, position: int) -> tuple[int, np.random.Generator]:
        if not 0 <= position < self.length:
            raise IndexError(f"item {position} out of range (epoch length {self.length})")
        rng = np.random.default_rng([_ITEM, self.seed, self.epoch, position])
        return int(self.order[position]), rng


class TrainEpisodes(_EpochDataset):
    """Training episodes of one fold: query from the fold's train list, class among its base classes present."""

    def __init__(self, source: ImageSource, images: Sequence[str], pools: dict, image_classes: dict,
                 base_classes: Sequence[int], shot: int, aug: TrainAug = FEW_SHOT_AUG["pascal"], seed: int = 0,
                 max_episodes: int | None = None, info: PoolInfo = PoolInfo(), cache_bytes: int = PAIR_CACHE_BYTES):
        if shot < 1:
            raise ValueError(f"shot must be >= 1, got {shot!r}")
        if not images:
            raise DataError(f"empty train list (fold {info.fold}); nothing to train on")
        self.source, self.images, self.shot, self.aug, self.info = source, list(images), shot, aug, info
        self.read = PairCache(source, cache_bytes)  # every epoch reads the same images again
        allowed = {int(c) for c in base_classes}
        what = f"the train list of fold {info.fold}"
        self.candidates = [_present(image_classes, q, allowed, what) for q in self.images]
        self.pools = {int(c): list(v) for c, v in pools.items()}
        _check_pools({c for cs in self.candidates for c in cs}, self.pools, info)
        self.pool_sets = {c: frozenset(v) for c, v in self.pools.items()}
        super().__init__(len(self.images), seed, max_episodes)

    def episode(self, position: int) -> tuple[Episode, np.random.Generator]:
        """The episode at ``position`` of the current epoch and the generator left for its transforms."""
        index, rng = self._item(position)
        query = self.images[index]
        cls = _choose_class(rng, self.candidates[index])
        supports = draw_supports(rng, self.pools[cls], query, self.shot, cls, self.info, self.pool_sets[cls])
        return Episode(query, cls, supports), rng

    def __getitem__(self, position: int) -> dict:
        ep, rng = self.episode(position)
        c = ep.class_id
        image, label = self.read(ep.query_id)
        query, q_label = train_transform(image, label, rng, self.aug, protect=c)
        supports = torch.empty(self.shot, 3, *self.aug.crop)  # filled in place: no stacking copy
        s_labels = np.empty((self.shot, *self.aug.crop), dtype=np.uint8)
        for k, sid in enumerate(ep.support_ids):
            image, label = self.read(sid)
            _, s_lab = train_transform(image, label, rng, self.aug, protect=c, out=supports[k])
            s_labels[k] = binarize(s_lab, c)
        return {
            "query": query,
            "query_label": _long(binarize(q_label, c)),
            "query_label_full": _long(q_label),
            "supports": supports,
            "support_labels": _long(s_labels),
            "class_id": torch.tensor(c, dtype=torch.long),
        }


class EvalEpisodes(Dataset):
    """A fixed episode list with the evaluation Resize; adds the original-resolution binary query label."""

    def __init__(self, source: ImageSource, episodes: Sequence[Episode], size: int = 473,
                 cache_bytes: int = PAIR_CACHE_BYTES):
        self.source, self.episodes, self.size = source, list(episodes), int(size)
        self.read = PairCache(source, cache_bytes)  # episodes reuse images; validation passes reuse the list

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> dict:
        ep = self.episodes[i]
        c = ep.class_id
        image, label = self.read(ep.query_id)
        query, q_label = eval_transform(image, label, self.size)
        supports, s_labels = [], []
        for sid in ep.support_ids:
            s_img, s_lab = eval_transform(*self.read(sid), self.size)
            supports.append(s_img)
            s_labels.append(_long(binarize(s_lab, c)))
        return {
            "query": query,
            "query_label": _long(binarize(q_label, c)),
            "query_label_full": _long(q_label),
            "supports": torch.stack(supports),
            "support_labels": torch.stack(s_labels),
            "class_id": torch.tensor(c, dtype=torch.long),
            "query_label_orig": _long(binarize(label, c)),
        }


def collate_episodes(items: Sequence[dict]) -> dict:
    """Stack every tensor field; keys ending in ``_orig`` (original-resolution labels) stay lists."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    return {k: [it[k] for it in items] if k.endswith("_orig") else torch.stack([it[k] for it in items])
            for k in items[0]}


class BaseSegmentation(_EpochDataset):
    """BAM's base-learner data (``BaseData``): image + label with base classes -> 1..N_base (position in the
    sorted base list + 1), novel classes -> 0, 255 kept.

    BAM's train_base.py reads the whole dataset list (``lists/<split>.txt``, e.g. all 5,953 PASCAL train images,
    novel classes included as background), not a fold list. Training: ``aug`` given (random, per-item
    generators); evaluation: ``aug=None`` and the Resize to ``size``, in list order, with ``label_orig``.
    As in BAM, the crop rule protects the pixels of remapped label 1, i.e. of the first base class.
    """

    def __init__(self, source: ImageSource, ids: Sequence[str], base_classes: Sequence[int],
                 aug: TrainAug | None = None, size: int = 417, seed: int = 0, max_items: int | None = None):
        if not ids:
            raise ValueError("empty image list for the base learner")
        self.source, self.ids, self.aug, self.size = source, list(ids), aug, int(size)
        base = sorted(int(c) for c in base_classes)
        self.remap = lookup({c: i + 1 for i, c in enumerate(base)}, 0)
        self.first_base = base[0]
        super().__init__(len(self.ids), seed, max_items, shuffle=aug is not None)

    def __getitem__(self, position: int) -> dict:
        index, rng = self._item(position)
        image, label = read_pair(self.source, self.ids[index])
        if self.aug is None:
            img, lab = eval_transform(image, label, self.size)
            return {"image": img, "label": _long(np.take(self.remap, lab)),
                    "label_orig": _long(np.take(self.remap, label))}
        img, lab = train_transform(image, label, rng, self.aug, protect=self.first_base)
        return {"image": img, "label": _long(np.take(self.remap, lab))}


# --- builders from the files of a prepared dataset and its splits -------------------------------------------------


def _fold_inputs(splits_dir, setting: str, split: str, fold: int) -> tuple[list[str], dict, PoolInfo]:
    fl = load_fold(splits_dir, setting, split, fold)
    _, pools_path = fold_files(splits_dir, setting, split, fold)
    return fl.images, fl.pools, PoolInfo(fold, f"{setting}/{split}", str(pools_path))


def train_episodes(root, splits_dir, setting: str, fold: int, shot: int, aug: TrainAug | None = None, seed: int = 0,
                   max_episodes: int | None = None, coco_split: str = DEFAULT_COCO_SPLIT,
                   image_classes: dict | None = None, exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
                   cache_bytes: int = PAIR_CACHE_BYTES) -> TrainEpisodes:
    """Training episodes of (dataset at ``root``, setting, fold, shot); ``aug=None``: the authors' settings for
    the dataset (PASCAL 473 crop, scale 0.9-1.1; COCO 641, 0.8-1.25). ``cache_bytes``: decoded pairs kept in
    memory (:class:`svf.data.images.PairCache`; 0 reads every pair from disk)."""
    source = open_dataset(root, exif_orientation=exif_orientation)
    images, pools, info = _fold_inputs(splits_dir, setting, "train", fold)
    ic = load_image_classes(splits_dir) if image_classes is None else image_classes
    base = fold_classes(source.name, fold, coco_split).base
    aug = FEW_SHOT_AUG[source.name] if aug is None else aug
    return TrainEpisodes(source, images, pools, ic, base, shot, aug, seed, max_episodes, info, cache_bytes)


def eval_episodes(root, splits_dir, setting: str, fold: int, shot: int, seed: int, n_episodes: int,
                  size: int | None = None, coco_split: str = DEFAULT_COCO_SPLIT,
                  image_classes: dict | None = None, exif_orientation: str = DEFAULT_EXIF_ORIENTATION,
                  split: str = "val", cache_bytes: int = PAIR_CACHE_BYTES) -> EvalEpisodes:
    """Evaluation episodes of one (protocol seed, episode count): see :func:`protocol_runs`. ``size=None``: the
    authors' val_size (PASCAL 473, COCO 641; content floored to a multiple of 8). ``split``: ``val`` (the test
    list) or ``holdout`` (the study's model-selection list, disjoint from every test episode; svf/data/splits.py)."""
    source = open_dataset(root, exif_orientation=exif_orientation)
    images, pools, info = _fold_inputs(splits_dir, setting, split, fold)
    ic = load_image_classes(splits_dir) if image_classes is None else image_classes
    novel = fold_classes(source.name, fold, coco_split).novel
    size = VAL_SIZE[source.name] if size is None else size
    return EvalEpisodes(source, make_episode_list(images, ic, pools, novel, n_episodes, seed, shot, info), size,
                        cache_bytes)


def base_datasets(root, fold: int, train_aug: TrainAug = BASE_AUG, val_size: int = BASE_VAL_SIZE, seed: int = 0,
                  max_items: int | None = None, coco_split: str = DEFAULT_COCO_SPLIT,
                  exif_orientation: str = DEFAULT_EXIF_ORIENTATION, val_images: int | None = None
                  ) -> tuple[BaseSegmentation, BaseSegmentation]:
    """(train, val) data of BAM's base learner for ``fold``; defaults = BAM's ``*_base.yaml`` (417 crop,
    scale 0.5-2.0, val_size 417). Lists: the dataset's whole ``train`` and ``val`` lists, as train_base.py;
    ``val_images`` keeps the first N of the val list (a cheaper validation for the CPU demo)."""
    source = open_dataset(root, exif_orientation=exif_orientation)
    base = fold_classes(source.name, fold, coco_split).base
    return (BaseSegmentation(source, source.ids("train"), base, train_aug, seed=seed, max_items=max_items),
            BaseSegmentation(source, source.ids("val")[:val_images], base, None, size=val_size))


def save_episode_list(path, episodes: Sequence[Episode]) -> None:
    """Write an episode list as JSON ``[[query_id, class_id, [support ids]], ...]`` (written aside, renamed)."""
    write_text(path, json.dumps([[e.query_id, e.class_id, list(e.support_ids)] for e in episodes]) + "\n")


def load_episode_list(path) -> list[Episode]:
    raw = json.loads(Path(path).read_text())
    return [Episode(q, int(c), tuple(s)) for q, c, s in raw]
