"""Prepared datasets (the layout ``svf prepare`` writes) and the constants every other module shares.

A prepared dataset is a directory with ``dataset.json`` (``{"name", "num_classes", "class_names"}``) plus, as in
PFENet's data roots:

- PASCAL: ``JPEGImages/<id>.jpg``, ``SegmentationClassAug/<id>.png``, ``lists/{train,val}.txt``;
- COCO: ``{train2014,val2014}/<id>.jpg``, ``annotations/{train2014,val2014}/<id>.png``, ``lists/{train,val}.txt``.

Masks are 8-bit grey PNGs: 0 = background, 1..num_classes, 255 = void (PASCAL only).
Fold classes follow PFENet/BAM: PASCAL fold i novel = 5i+1..5i+5; COCO fold i novel = {i+1, i+5, ..., i+77}
("interleaved", BAM's "FWB" split used by PFENet/BAM/SVF) or 20i+1..20i+20 ("contiguous", PANet's split).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write, write_text
from ..labels import IGNORE_LABEL

DATASETS = ("pascal", "coco")
SETTINGS = ("dagger", "original")  # dagger = BAM's filtered train lists (the paper's †), original = PFENet's
SPLITS = ("train", "val")
DATASET_FILE = "dataset.json"  # what makes a directory a prepared dataset (name, classes)
SPLITS_SUMMARY = "splits_summary.json"  # written last by `svf splits`: the fold lists are complete
COCO_SPLITS = ("interleaved", "contiguous")
DEFAULT_COCO_SPLIT = COCO_SPLITS[0]  # BAM's, the authors'
# whether a JPEG is turned by its EXIF orientation (PIL and OpenCV differ: docs/data.md)
EXIF_ORIENTATIONS = ("apply", "ignore")
DEFAULT_EXIF_ORIENTATION = EXIF_ORIENTATIONS[0]
NUM_FOLDS = 4
MIN_PIXELS = 2 * 32 * 32  # Shaban's rule kept by PFENet/BAM: a class counts for an image from 2048 pixels on

PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# The 80 COCO categories in category-id order; mask value = position here + 1.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

# COCO's category ids (1..90 with gaps) in the same order as COCO_CLASSES.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)

CLASS_NAMES = {"pascal": PASCAL_CLASSES, "coco": COCO_CLASSES}
NUM_CLASSES = {name: len(names) for name, names in CLASS_NAMES.items()}


def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def novel_classes(dataset: str, fold: int, coco_split: str = DEFAULT_COCO_SPLIT) -> list[int]:
    """Class ids (1-based) tested in ``fold``: PASCAL 5i+1..5i+5; COCO every 4th class or a block of 20."""
    _check_dataset(dataset)
    if fold not in range(NUM_FOLDS):
        raise ValueError(f"fold must be one of 0..{NUM_FOLDS - 1}, got {fold!r}")
    if dataset == "pascal":
        return list(range(5 * fold + 1, 5 * fold + 6))
    if coco_split == "interleaved":
        return list(range(fold + 1, 81, 4))
    if coco_split == "contiguous":
        return list(range(20 * fold + 1, 20 * fold + 21))
    raise ValueError(f"unknown coco_split {coco_split!r}; choose one of {COCO_SPLITS}")


def base_classes(dataset: str, fold: int, coco_split: str = DEFAULT_COCO_SPLIT) -> list[int]:
    """Class ids trained on in ``fold``: every class that is not novel, ascending."""
    novel = set(novel_classes(dataset, fold, coco_split))
    return [c for c in range(1, NUM_CLASSES[dataset] + 1) if c not in novel]


@dataclass(frozen=True)
class FoldClasses:
    novel: tuple[int, ...]
    base: tuple[int, ...]


def fold_classes(dataset: str, fold: int, coco_split: str = DEFAULT_COCO_SPLIT) -> FoldClasses:
    """Novel and base classes of one fold (see :func:`novel_classes`)."""
    return FoldClasses(tuple(novel_classes(dataset, fold, coco_split)), tuple(base_classes(dataset, fold, coco_split)))


class PreparedDataset:
    """Read access to a prepared dataset directory (see the module docstring for the layout)."""

    def __init__(self, root: str | Path, name: str, num_classes: int, class_names: list[str], info: dict,
                 exif_orientation: str = DEFAULT_EXIF_ORIENTATION):
        self.root = Path(root)
        self.exif_orientation = exif_orientation  # how its JPEGs are read (svf.data.images.read_image)
        self.name = name
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.info = info  # the whole dataset.json (e.g. "source": "synthetic")
        self._ids: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"PreparedDataset(name={self.name!r}, root={str(self.root)!r})"

    def _coco_subset(self, image_id: str) -> str:
        for subset in ("train2014", "val2014"):
            if f"_{subset}_" in image_id:
                return subset
        raise ValueError(f"{self.root}: COCO image id {image_id!r} names neither train2014 nor val2014")

    def image_path(self, image_id: str) -> Path:
        if self.name == "pascal":
            return self.root / "JPEGImages" / f"{image_id}.jpg"
        return self.root / self._coco_subset(image_id) / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        if self.name == "pascal":
            return self.root / "SegmentationClassAug" / f"{image_id}.png"
        return self.root / "annotations" / self._coco_subset(image_id) / f"{image_id}.png"

    def list_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return self.root / "lists" / f"{split}.txt"

    def ids(self, split: str) -> list[str]:
        """Image ids of ``lists/<split>.txt`` in file order (a copy; cached)."""
        if split not in self._ids:
            path = self.list_path(split)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: list file missing (run `svf prepare` on {self.root})")
            self._ids[split] = read_id_list(path)
        return list(self._ids[split])

    def read_mask(self, image_id: str) -> np.ndarray:
        """The class mask as a (H, W) uint8 array; an unreadable file raises an error naming it."""
        return read_mask(self.mask_path(image_id))

    @cached_property
    def class_ids(self) -> list[int]:
        return list(range(1, self.num_classes + 1))


def read_id_list(path: str | Path) -> list[str]:
    """One id per line; blank lines ignored. Lines in PFENet's ``a.jpg b.png`` format give the image stem."""
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        first = line.split()[0]
        ids.append(Path(first).stem if "/" in first or first.endswith(".jpg") else first)
    return ids


def write_id_list(path: str | Path, ids) -> None:
    write_text(path, "".join(f"{i}\n" for i in ids))


def read_mask(path: str | Path) -> np.ndarray:
    """Read an 8-bit class-index PNG (grey or palette: the stored indices, never colours)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise ValueError(f"mode {img.mode!r}, expected an 8-bit grey ('L') or palette ('P') PNG")
            return np.asarray(img, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"mask file missing: {path}") from None
    except Exception as exc:  # PIL raises several types for corrupt files
        raise DataError(f"cannot read mask {path}: {exc}") from None


LINK_MODES = ("hardlink", "symlink", "copy")


def place_file(src: str | Path, dst: str | Path, mode: str = "hardlink") -> None:
    """Put ``src`` at ``dst`` by hard link (copy across file systems), absolute symlink or copy."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"source file missing: {src}")
    if mode not in LINK_MODES:
        raise ValueError(f"unknown link mode {mode!r}; choose one of {LINK_MODES}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        dst.symlink_to(src.resolve())
        return
    if mode == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # other file system or no link support: copy instead
    shutil.copyfile(src, dst)


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Save a (H, W) uint8 class mask as an 8-bit grey PNG (written aside, then renamed)."""
    from PIL import Image

    path = Path(path)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"{path}: a mask must be a 2-D uint8 array, got {mask.dtype} {mask.shape}")
    atomic_write(path, lambda tmp: Image.fromarray(mask, mode="L").save(tmp, format="PNG"), durable=False)


def write_dataset_json(root: str | Path, name: str, **extra) -> Path:
    """Write ``<root>/dataset.json`` for dataset ``name`` (extra keys, e.g. ``source``, are kept)."""
    _check_dataset(name)
    info = {"name": name, "num_classes": NUM_CLASSES[name], "class_names": list(CLASS_NAMES[name]), **extra}
    return write_text(Path(root) / DATASET_FILE, json.dumps(info, indent=1) + "\n")


def read_json_with_keys(path: Path, keys, missing_hint: str) -> dict:
    """A JSON object from ``path`` that must have ``keys``; errors name the file and the key at fault."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing_hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    for key in keys:
        if key not in data:
            raise DataError(f"{path}: missing key {key!r}")
    return data


def open_dataset(root: str | Path, exif_orientation: str = DEFAULT_EXIF_ORIENTATION) -> PreparedDataset:
    """Open a prepared dataset directory; errors name the file and the key at fault. ``exif_orientation``: how its
    images are read (apply: as the authors' cv2.imread; ignore: stored pixel order)."""
    path = Path(root) / DATASET_FILE
    info = read_json_with_keys(path, ("name", "num_classes", "class_names"),
                               "not a prepared dataset (no dataset.json; run `svf prepare`)")
    name = info["name"]
    if name not in DATASETS:
        raise DataError(f"{path}: key 'name' is {name!r}, expected one of {DATASETS}")
    if info["num_classes"] != NUM_CLASSES[name] or len(info["class_names"]) != NUM_CLASSES[name]:
        raise DataError(f"{path}: {name} has {NUM_CLASSES[name]} classes, got num_classes={info['num_classes']!r} "
                         f"and {len(info['class_names'])} class_names")
    return PreparedDataset(root, name, info["num_classes"], info["class_names"], info, exif_orientation)


__all__ = [
    "CLASS_NAMES", "COCO_CATEGORY_IDS", "COCO_CLASSES", "COCO_SPLITS", "DEFAULT_COCO_SPLIT", "DEFAULT_EXIF_ORIENTATION", "EXIF_ORIENTATIONS", "DATASET_FILE", "DATASETS", "FoldClasses",
    "IGNORE_LABEL",
    "LINK_MODES", "MIN_PIXELS", "NUM_CLASSES", "NUM_FOLDS", "PASCAL_CLASSES", "PreparedDataset", "SETTINGS", "SPLITS",
    "base_classes", "fold_classes", "novel_classes", "open_dataset", "place_file", "read_id_list", "read_mask",
    "write_dataset_json", "write_id_list", "write_mask",
]
