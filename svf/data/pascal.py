"""PASCAL-5i preparation: VOC2012 + SBD raw downloads -> the prepared layout (JPEGImages, SegmentationClassAug, lists).

Lists, as PFENet's ``lists/pascal``:

- ``train`` = SBD ``train_noval.txt`` followed by VOC2012 ``ImageSets/Segmentation/train.txt``, duplicates dropped
  keeping the first occurrence (PFENet's ``voc_sbd_merge.txt`` is exactly ``sbd_data.txt`` + ``voc_original_train.txt``
  and ``duplicate_removel.py`` keeps first occurrences: 5,623 + 1,464 - 1,134 = 5,953 ids on real data);
- ``val`` = VOC2012 ``val.txt`` (1,449 ids).

Masks (``SegmentationClassAug/<id>.png``, grey, 0..20, 255 void) are built per image from the VOC palette PNG
(``SegmentationClass``; palette indices are the class ids, 255 kept) when VOC has one, else from SBD's
``cls/<id>.mat`` (``GTcls.Segmentation``, no void); ``prefer="sbd"`` flips the choice for the 1,134 images both
annotate. A ready-made ``SegmentationClassAug`` folder (e.g. DrSleep's zip) can be used instead.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import (
    IGNORE_LABEL, NUM_CLASSES, place_file, read_id_list, read_mask, write_dataset_json, write_id_list, write_mask,
)

PREFER = ("voc", "sbd")
PARALLEL_MIN_IMAGES = 64  # below this, worker start-up costs more than it saves


@dataclass(frozen=True)
class PascalRaw:
    """Where the raw PASCAL files are (defaults follow the archives' own layout under one download dir)."""
    voc: Path  # VOCdevkit/VOC2012
    sbd: Path | None  # benchmark_RELEASE/dataset (None: VOC only)
    sbd_list: Path | None  # train_noval.txt
    segmentation_class_aug: Path | None = None  # a ready-made SegmentationClassAug folder

    @classmethod
    def under(cls, raw_dir, voc=None, sbd=None, sbd_list=None, segmentation_class_aug=None) -> "PascalRaw":
        raw_dir = Path(raw_dir) if raw_dir is not None else None

        def pick(given, default):
            if given is not None:
                return Path(given)
            return raw_dir / default if raw_dir is not None else None

        return cls(pick(voc, "VOCdevkit/VOC2012"), pick(sbd, "benchmark_RELEASE/dataset"),
                   pick(sbd_list, "train_noval.txt"),
                   Path(segmentation_class_aug) if segmentation_class_aug else None)


def merge_lists(*lists) -> list[str]:
    """Concatenate id lists keeping the first occurrence of each id (PFENet's duplicate removal)."""
    return list(dict.fromkeys(i for ids in lists for i in ids))


def read_sbd_mat(path: str | Path) -> np.ndarray:
    """The class mask of an SBD ``cls/*.mat`` file (``GTcls.Segmentation``) as uint8."""
    import scipy.io

    path = Path(path)
    try:
        gt = scipy.io.loadmat(path)["GTcls"]
        seg = np.asarray(gt["Segmentation"][0, 0])
    except FileNotFoundError:
        raise FileNotFoundError(f"SBD mask file missing: {path}") from None
    except Exception as exc:
        raise ValueError(f"cannot read GTcls.Segmentation from {path}: {exc}") from exc
    if seg.ndim != 2 or seg.size == 0 or seg.min() < 0 or seg.max() > NUM_CLASSES["pascal"]:
        raise ValueError(f"{path}: GTcls.Segmentation must be a 2-D array of 0..20, "
                         f"got shape {seg.shape} range {seg.min() if seg.size else None}..{seg.max() if seg.size else None}")
    return seg.astype(np.uint8)


def read_voc_mask(path: str | Path) -> np.ndarray:
    """A VOC ``SegmentationClass`` palette PNG as class ids (the palette indices; 255 = void/border)."""
    mask = read_mask(path)
    values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    bad = values[(values > NUM_CLASSES["pascal"]) & (values != IGNORE_LABEL)]
    if bad.size:
        raise ValueError(f"{path}: palette indices {bad.tolist()} are not PASCAL classes (0..20, 255)")
    return mask


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def _build_one(job) -> str:
    """Place one image and write its mask; returns where the mask came from."""
    image_id, image_src, mask_src, kind, out, link = job
    place_file(image_src, out / "JPEGImages" / f"{image_id}.jpg", link)
    mask_dst = out / "SegmentationClassAug" / f"{image_id}.png"
    if kind == "aug":
        mask = read_mask(mask_src)
        if mask.ndim != 2:
            raise ValueError(f"{mask_src}: expected a single-channel mask")
    elif kind == "voc":
        mask = read_voc_mask(mask_src)
    else:
        mask = read_sbd_mat(mask_src)
    if mask.shape != _image_size(image_src):
        raise ValueError(f"{mask_src}: mask size {mask.shape} differs from image {image_src} "
                         f"{_image_size(image_src)}")
    write_mask(mask_dst, mask)
    return kind


def _sources(raw: PascalRaw, image_id: str, prefer: str) -> tuple[Path, Path, str]:
    voc_img = raw.voc / "JPEGImages" / f"{image_id}.jpg"
    sbd_img = raw.sbd / "img" / f"{image_id}.jpg" if raw.sbd else None
    image = voc_img if voc_img.is_file() or sbd_img is None or not sbd_img.is_file() else sbd_img
    if raw.segmentation_class_aug is not None:
        return image, raw.segmentation_class_aug / f"{image_id}.png", "aug"
    voc_mask = raw.voc / "SegmentationClass" / f"{image_id}.png"
    sbd_mask = raw.sbd / "cls" / f"{image_id}.mat" if raw.sbd else None
    order = [(voc_mask, "voc"), (sbd_mask, "sbd")]
    if prefer == "sbd":
        order.reverse()
    for path, kind in order:
        if path is not None and path.is_file():
            return image, path, kind
    raise FileNotFoundError(f"no mask for {image_id}: neither {voc_mask} nor {sbd_mask} exists")


def _check_against_reference(train, val, voc_train, voc_val, reference_dir) -> list[str]:
    """On the real VOC2012 lists, our merged lists must equal PFENet's; returns the differences."""
    ref = Path(reference_dir) / "pascal"
    try:
        ref_voc_train = read_id_list(ref / "voc_original_train_images.txt")
        ref_val = read_id_list(ref / "val_images.txt")
        ref_train = read_id_list(ref / "voc_sbd_merge_noduplicate_images.txt")
    except FileNotFoundError:
        return []
    if voc_train != ref_voc_train or voc_val != ref_val:
        return []  # not the real VOC2012 (synthetic or a subset): nothing to compare
    problems = []
    if train != ref_train:
        problems.append(f"train list: {len(train)} ids vs PFENet's voc_sbd_merge_noduplicate {len(ref_train)} "
                        f"({len(set(ref_train) - set(train))} missing, {len(set(train) - set(ref_train))} extra)")
    if val != ref_val:
        problems.append(f"val list: {len(val)} ids vs PFENet's val {len(ref_val)}")
    return problems


def prepare_pascal(raw: PascalRaw, out_dir, link: str = "hardlink", prefer: str = "voc", workers: int = 1,
                   progress: bool = True, reference_dir=None, source: str = "voc2012+sbd") -> dict:
    """Build the prepared PASCAL dataset in ``out_dir``; returns a summary (list sizes, mask sources)."""
    from tqdm import tqdm

    if prefer not in PREFER:
        raise ValueError(f"unknown prefer={prefer!r}; choose one of {PREFER}")
    out = Path(out_dir)
    seg_lists = raw.voc / "ImageSets" / "Segmentation"
    for name in ("train.txt", "val.txt"):
        if not (seg_lists / name).is_file():
            raise FileNotFoundError(f"VOC list missing: {seg_lists / name} (is --voc the VOCdevkit/VOC2012 folder?)")
    voc_train, voc_val = read_id_list(seg_lists / "train.txt"), read_id_list(seg_lists / "val.txt")
    sbd_train: list[str] = []
    if raw.sbd_list is not None:
        if not raw.sbd_list.is_file():
            raise FileNotFoundError(f"SBD list missing: {raw.sbd_list} (download item sbd_train_noval)")
        sbd_train = read_id_list(raw.sbd_list)
    leaked = sorted(set(sbd_train) & set(voc_val))
    if leaked:
        raise ValueError(f"{raw.sbd_list}: {len(leaked)} ids are VOC val images (e.g. {leaked[0]}); "
                         "use SBD's train_noval.txt, not train.txt")
    train = merge_lists(sbd_train, voc_train)
    val = list(voc_val)

    jobs = []
    for image_id in merge_lists(train, val):
        image, mask, kind = _sources(raw, image_id, prefer)
        jobs.append((image_id, image, mask, kind, out, link))
    bar = dict(total=len(jobs), desc="prepare pascal", unit="img", file=sys.stderr, disable=not progress,
               mininterval=2.0)
    if workers > 1 and len(jobs) >= PARALLEL_MIN_IMAGES:
        import multiprocessing as mp

        with mp.Pool(workers) as pool:
            kinds = list(tqdm(pool.imap(_build_one, jobs, chunksize=32), **bar))
    else:
        kinds = list(tqdm(map(_build_one, jobs), **bar))

    write_id_list(out / "lists" / "train.txt", train)
    write_id_list(out / "lists" / "val.txt", val)
    write_dataset_json(out, "pascal", source=source)
    summary = {"train": len(train), "val": len(val), "voc_train": len(voc_train), "sbd_train_noval": len(sbd_train),
               "in_both": len(set(voc_train) & set(sbd_train)),
               "mask_sources": {k: kinds.count(k) for k in sorted(set(kinds))}}
    if reference_dir is not None:
        problems = _check_against_reference(train, val, voc_train, voc_val, reference_dir)
        for p in problems:
            warnings.warn(f"PASCAL lists differ from PFENet's: {p}", stacklevel=2)
        summary["reference_problems"] = problems
    return summary
