"""Fold splits of a prepared dataset: the per-fold image lists and support pools of PFENet / BAM.

Every mask is read once (``scan_masks``: one ``np.bincount`` per mask) into ``image_classes`` =
``{image_id: {class_id: pixel_count}}``; the fold lists are then pure set arithmetic on those counts, following
``make_dataset`` of PFENet and BAM (``util/dataset.py``):

- the classes of an image are all values of its mask except 0 and 255, however few pixels they cover;
- a class is *registered* for an image when it is one of the list's classes (base classes for train, novel classes
  for val) and covers >= ``min_pixels`` (2 * 32 * 32) pixels; an image with no registered class is dropped, so
  images whose objects are all small never appear;
- setting ``dagger`` (BAM's ``filter_intersection=True``, the paper's dagger) drops, before that, every training
  image whose classes are not all base classes (any novel pixel removes it); ``original`` (PFENet) does not;
- val lists use the novel classes and no intersection filter, so both settings have the same val lists;
- holdout lists (not in PFENet/BAM: the study's model selection, docs/study.md) apply the val rule to the *train*
  list: training images with a novel class of the fold. The dagger setting never trains on them (any novel pixel
  drops an image) and no test episode uses them (test episodes come from the val list), so validation episodes
  drawn from them select a model without seeing the test set; in the original setting they are training images
  in which the novel objects are labelled background;
- the image list keeps the order of ``lists/<split>.txt``; a class pool lists the images registered for the
  class (sorted ids, as in the authors' published lists reduced to ids).

Files written (layout of ``docs/architecture.md``): ``image_classes.json``,
``<setting>/<split>/fold{k}_images.txt``, ``<setting>/<split>/fold{k}_support_pools.json`` and
``splits_summary.json`` (counts per file, the parameters, and the result of the reference comparison).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import REPO_ROOT, write_text

from .datasets import (
    DEFAULT_COCO_SPLIT, IGNORE_LABEL, MIN_PIXELS, NUM_FOLDS, SETTINGS, SPLITS, SPLITS_SUMMARY, PreparedDataset, base_classes, novel_classes,
    read_id_list, read_mask, write_id_list,
)

HOLDOUT = "holdout"  # the study's validation list: train-list images holding a novel class (module docstring)
FOLD_LISTS = (*SPLITS, HOLDOUT)  # every list `svf splits` writes per setting and fold
SOURCE_LIST = {"train": "train", "val": "val", HOLDOUT: "train"}  # the dataset list each fold list is drawn from

# The authors' published PASCAL lists reduced to ids (shipped in the repository, see config/reference_splits/).
DEFAULT_REFERENCE_DIR = REPO_ROOT / "config" / "reference_splits"
IMAGE_CLASSES = "image_classes.json"  # the classes and pixel counts of every image, from one scan of the masks


# --- scanning -----------------------------------------------------------------------------------------------------


def mask_class_counts(mask: np.ndarray, num_classes: int, where: str = "mask") -> dict[int, int]:
    """``{class_id: pixels}`` of one mask, 0 and 255 excluded; a value outside 0..num_classes/255 is an error."""
    counts = np.bincount(mask.ravel(), minlength=256)
    bad = np.flatnonzero(counts[num_classes + 1:IGNORE_LABEL]) + num_classes + 1
    if bad.size:
        raise ValueError(f"{where}: values {bad.tolist()} are neither a class (1..{num_classes}), 0 nor 255")
    present = np.flatnonzero(counts[1:num_classes + 1]) + 1
    return {int(c): int(counts[c]) for c in present}


def _scan_one(job: tuple[str, str, int]) -> tuple[str, dict[int, int]]:
    image_id, path, num_classes = job
    return image_id, mask_class_counts(read_mask(path), num_classes, where=path)


def scan_masks(dataset: PreparedDataset, ids, workers: int = 1, progress: bool = True) -> dict[str, dict[int, int]]:
    """Class pixel counts of every mask of ``ids`` (order kept; duplicates scanned once)."""
    from tqdm import tqdm

    unique = list(dict.fromkeys(ids))
    jobs = [(i, str(dataset.mask_path(i)), dataset.num_classes) for i in unique]
    bar = dict(total=len(jobs), desc=f"scan {dataset.name} masks", unit="mask", file=sys.stderr,
               disable=not progress, mininterval=2.0)
    if workers <= 1 or len(jobs) < 64:
        return dict(tqdm(map(_scan_one, jobs), **bar))
    import multiprocessing as mp

    with mp.Pool(workers) as pool:
        return dict(tqdm(pool.imap(_scan_one, jobs, chunksize=64), **bar))


# --- fold lists ---------------------------------------------------------------------------------------------------


@dataclass
class FoldList:
    images: list[str]
    pools: dict[int, list[str]]  # every class of the list, sorted ids (possibly empty)

    def summary(self) -> dict:
        return {"images": len(self.images), "unique_images": len(set(self.images)),
                "pool_sizes": {str(c): len(v) for c, v in self.pools.items()}}


def build_fold_list(ids, image_classes: dict[str, dict[int, int]], classes, filter_intersection: bool,
                    min_pixels: int = MIN_PIXELS) -> FoldList:
    """One list of PFENet/BAM ``make_dataset`` (see the module docstring for the rules)."""
    classes = [int(c) for c in classes]
    allowed = set(classes)
    images: list[str] = []
    pools: dict[int, list[str]] = {c: [] for c in classes}
    for image_id in ids:
        counts = image_classes[image_id]
        if filter_intersection and not allowed.issuperset(counts):
            continue
        registered = [c for c, n in counts.items() if c in allowed and n >= min_pixels]
        if registered:
            images.append(image_id)
            for c in registered:
                pools[c].append(image_id)
    return FoldList(images, {c: sorted(v) for c, v in pools.items()})


def fold_list_for(setting: str, split: str, dataset: str, fold: int, ids, image_classes, min_pixels: int = MIN_PIXELS,
                  coco_split: str = DEFAULT_COCO_SPLIT) -> FoldList:
    """The list of (setting, split, fold): train = base classes (dagger: intersection filter), val = novel;
    holdout = novel classes in the training images (``ids`` = the train list)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {SETTINGS}")
    if split == "train":
        return build_fold_list(ids, image_classes, base_classes(dataset, fold, coco_split),
                               filter_intersection=(setting == "dagger"), min_pixels=min_pixels)
    if split in ("val", HOLDOUT):
        return build_fold_list(ids, image_classes, novel_classes(dataset, fold, coco_split),
                               filter_intersection=False, min_pixels=min_pixels)
    raise ValueError(f"unknown split {split!r}; choose one of {FOLD_LISTS}")


# --- files --------------------------------------------------------------------------------------------------------


def fold_files(splits_dir: str | Path, setting: str, split: str, fold: int) -> tuple[Path, Path]:
    base = Path(splits_dir) / setting / split
    return base / f"fold{fold}_images.txt", base / f"fold{fold}_support_pools.json"


def write_fold_list(splits_dir, setting: str, split: str, fold: int, fl: FoldList) -> None:
    images_path, pools_path = fold_files(splits_dir, setting, split, fold)
    write_id_list(images_path, fl.images)
    _write_json(pools_path, {str(c): v for c, v in fl.pools.items()})


def load_fold(splits_dir, setting: str, split: str, fold: int) -> FoldList:
    """Read one fold list written by ``svf splits`` (what training and evaluation use; no mask is read)."""
    images_path, pools_path = fold_files(splits_dir, setting, split, fold)
    for p in (images_path, pools_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: split file missing (run `svf splits`)")
    try:
        raw = json.loads(pools_path.read_text())
        pools = {int(c): list(v) for c, v in raw.items()}
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{pools_path}: expected {{class_id: [image ids]}} ({exc})") from exc
    return FoldList(read_id_list(images_path), pools)


def load_image_classes(splits_dir) -> dict[str, dict[int, int]]:
    path = Path(splits_dir) / IMAGE_CLASSES
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (run `svf splits`)")
    raw = json.loads(path.read_text())
    return {i: {int(c): int(n) for c, n in counts.items()} for i, counts in raw.items()}


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=0) + "\n")


# --- reference comparison -----------------------------------------------------------------------------------------


@dataclass
class ReferenceCheck:
    applicable: bool
    reason: str
    mismatches: list[str] = field(default_factory=list)
    files_compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict:
        return {"applicable": self.applicable, "reason": self.reason, "files_compared": self.files_compared,
                "mismatches": self.mismatches}


def _is_real_pascal(dataset: PreparedDataset, reference_dir: Path) -> tuple[bool, str]:
    if dataset.name != "pascal":
        return False, f"no reference lists for {dataset.name}"
    ref_train = reference_dir / "pascal" / "voc_sbd_merge_noduplicate_images.txt"
    ref_val = reference_dir / "pascal" / "val_images.txt"
    if not (ref_train.is_file() and ref_val.is_file()):
        return False, f"reference lists not found under {reference_dir}"
    if set(dataset.ids("train")) != set(read_id_list(ref_train)) or \
            set(dataset.ids("val")) != set(read_id_list(ref_val)):
        return False, "image set differs from the real PASCAL-5i lists (e.g. synthetic data)"
    return True, "real PASCAL-5i image set"


def compare_fold_list(name: str, ours: FoldList, ref: FoldList) -> list[str]:
    """Human-readable differences between one of our fold lists and the reference (empty if identical)."""
    out = []
    if ours.images != ref.images:
        missing = len(set(ref.images) - set(ours.images))
        extra = len(set(ours.images) - set(ref.images))
        what = "order differs" if not (missing or extra) else f"{missing} missing, {extra} extra"
        out.append(f"{name}_images.txt: {len(ours.images)} images vs reference {len(ref.images)} ({what})")
    for c in sorted(set(ours.pools) | set(ref.pools)):
        a, b = ours.pools.get(c), ref.pools.get(c)
        if a is None or b is None or sorted(a) != sorted(b):
            na = "absent" if a is None else len(a)
            nb = "absent" if b is None else len(b)
            out.append(f"{name}_support_pools.json: class {c}: {na} images vs reference {nb}")
    return out


def compare_with_reference(splits_dir, dataset: PreparedDataset, reference_dir, settings, folds,
                           min_pixels: int) -> ReferenceCheck:
    """Compare the written PASCAL lists with the authors' ones when the image set is the real one."""
    reference_dir = Path(reference_dir)
    real, reason = _is_real_pascal(dataset, reference_dir)
    if not real:
        return ReferenceCheck(False, reason)
    if min_pixels != MIN_PIXELS:
        return ReferenceCheck(False, f"min_pixels={min_pixels}, the reference uses {MIN_PIXELS}")
    check = ReferenceCheck(True, reason)
    for setting in settings:
        for split in SPLITS:
            for fold in folds:
                images_path, _ = fold_files(reference_dir / "pascal", setting, split, fold)
                if not images_path.is_file():
                    check.mismatches.append(f"{setting}/{split}/fold{fold}: reference file {images_path} missing")
                    continue
                ref = load_fold(reference_dir / "pascal", setting, split, fold)
                ours = load_fold(splits_dir, setting, split, fold)
                check.mismatches += compare_fold_list(f"{setting}/{split}/fold{fold}", ours, ref)
                check.files_compared += 2
    return check


# --- the whole step -----------------------------------------------------------------------------------------------


def make_splits(dataset: PreparedDataset, out_dir, settings=SETTINGS, folds=range(NUM_FOLDS),
                coco_split: str = DEFAULT_COCO_SPLIT, min_pixels: int = MIN_PIXELS, workers: int = 1,
                reference_dir=DEFAULT_REFERENCE_DIR, progress: bool = True) -> tuple[dict, ReferenceCheck]:
    """Scan the masks of both lists once, write every fold file, compare with the reference, write the summary."""
    out_dir = Path(out_dir)
    settings, folds = list(settings), [int(k) for k in folds]
    lists = {split: dataset.ids(split) for split in SPLITS}
    image_classes = scan_masks(dataset, lists["train"] + lists["val"], workers=workers, progress=progress)
    _write_json(out_dir / IMAGE_CLASSES,
                {i: {str(c): n for c, n in sorted(counts.items())} for i, counts in image_classes.items()})

    files = {}
    for setting in settings:
        for split in FOLD_LISTS:
            for fold in folds:
                fl = fold_list_for(setting, split, dataset.name, fold, lists[SOURCE_LIST[split]], image_classes,
                                   min_pixels=min_pixels, coco_split=coco_split)
                write_fold_list(out_dir, setting, split, fold, fl)
                files[f"{setting}/{split}/fold{fold}"] = fl.summary()

    check = compare_with_reference(out_dir, dataset, reference_dir, settings, folds, min_pixels)
    summary = {
        "dataset": dataset.name, "dataset_root": str(dataset.root), "settings": settings, "folds": folds,
        "coco_split": coco_split if dataset.name == "coco" else None, "min_pixels": min_pixels,
        "lists": {split: len(ids) for split, ids in lists.items()}, "files": files,
        "reference_check": check.as_dict(),
    }
    _write_json(out_dir / SPLITS_SUMMARY, summary)
    return summary, check


def empty_pools(summary: dict) -> list[str]:
    """``file: class`` for every pool with fewer than 1 image, and empty image lists, from a summary."""
    out = []
    for name, info in summary["files"].items():
        if info["images"] == 0:
            out.append(f"{name}: empty image list")
        out += [f"{name}: class {c} has no support image" for c, n in info["pool_sizes"].items() if n == 0]
    return out
