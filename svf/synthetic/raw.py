"""Procedural stand-ins for the raw PASCAL VOC2012 + SBD and COCO 2014 downloads, in their real layouts.

``svf synth`` writes files that ``svf prepare`` then reads exactly like the real downloads:

- PASCAL: ``VOCdevkit/VOC2012/{JPEGImages, SegmentationClass (palette PNGs, 255 rings around objects),
  ImageSets/Segmentation/{train,val}.txt}``, ``benchmark_RELEASE/dataset/{img, cls/*.mat, train.txt}`` and
  ``train_noval.txt`` (part of the training images are VOC-only, part SBD-only, part in both, as in the real data);
- COCO: ``{train2014,val2014}/COCO_<subset>_<id>.jpg`` and ``annotations/instances_<subset>.json`` (polygons, a few
  crowd RLE annotations and images without any annotation, which preparation must skip).

Looks (:func:`class_look`): a class is one of 5 shapes, one of 6 textures and one of 6 colours, each attribute
shared by many classes (two neighbouring classes share a colour), only the combination unique (over all 80). Each
object gets a random rotation, scale and aspect, brightness, texture phase and period. So colour alone does not
identify a class, and the backbone's shape and texture features decide an episode, as real features do on PASCAL.
The demo's stand-in for ImageNet (:mod:`svf.synthetic.objects`) draws object-centric images of the same looks, so frozen
pretrained features already know the novel classes, as ImageNet's know PASCAL's.

Images are a 2x2 grid of cells (two cells, side by side or stacked, when four large objects do not fit, e.g. 96 px at
2048 pixels), one object (or none) per cell. Each image has a *primary* class (images cycle through the classes) drawn large
(>= ``min_pixels`` after rasterisation); the other cells get large or small (< ``min_pixels``) objects of the same
*purity group*: classes that are novel in the same fold for PASCAL and, for COCO, under both the interleaved and
the contiguous split. So an image is free of other folds' novel classes unless deliberately *mixed*: in per-class
rounds ``MIXED_LARGE_ROUND`` and ``MIXED_SMALL_ROUND`` a large, respectively small, object of another group is
added (the dagger filter drops these images, the original setting keeps them). Hence, for every fold and setting,
each train pool holds at least ``train_per_class - 2`` images and each val pool at least ``val_per_class``
(``guaranteed_pool_size``). Everything is drawn from ``numpy.random.default_rng`` seeded per image.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.datasets import COCO_CATEGORY_IDS, COCO_CLASSES, MIN_PIXELS, NUM_CLASSES
from ..labels import IGNORE_LABEL
from .looks import (FILL, MAX_ROTATION, background, check_scheme, class_look, finish, paint_object, polygons_at,
                    rasterise)

MIXED_LARGE_ROUND = 1  # per-class round whose image gets a large object of another group
MIXED_SMALL_ROUND = 4  # ... a small one (dagger still drops it: any novel pixel counts)
SMALL_SIDE = (8, 22)  # small objects: bounding-box side in pixels (capped so they stay under min_pixels / 2)
FILL_MARGIN = 1.08  # large objects aim at this multiple of min_pixels


@dataclass(frozen=True)
class SynthConfig:
    dataset: str = "pascal"
    train_per_class: int = 8  # images whose primary class is c, per class, in train
    val_per_class: int = 6
    image_size: int = 128
    min_pixels: int = MIN_PIXELS  # the split rule's threshold: large objects exceed it, small ones stay below
    seed: int = 0
    crowd_fraction: float = 0.05  # COCO: images that also get a crowd annotation
    empty_images: int = 3  # COCO: extra images per subset with no (non-crowd) annotation
    looks: str = "shared"  # how classes look (svf.synthetic.looks.LOOK_SCHEMES); fold_private: PASCAL only

    def check(self) -> None:
        if self.dataset not in NUM_CLASSES:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose pascal or coco")
        check_scheme(self.looks)
        if self.looks == "fold_private" and self.dataset != "pascal":
            raise ValueError("looks fold_private redraws PASCAL-5i's folds; COCO keeps looks shared")
        if self.train_per_class < 1 or self.val_per_class < 1:
            raise ValueError("train_per_class and val_per_class must be >= 1")
        if layout(self.image_size, self.min_pixels) is None:
            raise ValueError(f"image_size={self.image_size} is too small for objects of min_pixels="
                             f"{self.min_pixels} (two must fit side by side); raise the size or "
                             f"lower min_pixels (and pass the same --min-pixels to `svf splits`)")
        if _small_side_range(self.min_pixels)[0] < 3:
            raise ValueError(f"min_pixels={self.min_pixels} is too small to draw objects below it")


def guaranteed_pool_size(config: SynthConfig, split: str) -> int:
    """A lower bound on every support pool of every fold and setting (see the module docstring)."""
    if split == "val":
        return config.val_per_class
    mixed = sum(r < config.train_per_class for r in (MIXED_LARGE_ROUND, MIXED_SMALL_ROUND))
    return config.train_per_class - mixed


# --- classes: groups and looks ------------------------------------------------------------------------------------


def purity_group(dataset: str, c: int) -> tuple[int, ...]:
    """Classes sharing a group are novel together in every fold definition (PASCAL; COCO both splits)."""
    if dataset == "pascal":
        return ((c - 1) // 5,)
    return ((c - 1) % 4, (c - 1) // 20)


def _group_members(dataset: str) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for c in range(1, NUM_CLASSES[dataset] + 1):
        groups.setdefault(purity_group(dataset, c), []).append(c)
    return groups


def _large_dims(min_pixels: int, cell_h: int, cell_w: int) -> tuple[int, int, int, float] | None:
    """(lowest height, max height, max width, required (h-2)(w-2)) of large objects in a cell; None if none fits.

    A polygon scaled to a (h, w) box covers about fill * (h - 1)(w - 1) pixels; one more pixel per side is slack
    for rasterisation, and 2 pixels per side of the cell stay free for the 255 ring."""
    need = min_pixels * FILL_MARGIN / min(FILL.values())
    max_h, max_w = cell_h - 4, cell_w - 4
    if max_w <= 2:
        return None
    low_h = math.ceil(need / (max_w - 2)) + 2
    return (low_h, max_h, max_w, need) if low_h <= max_h else None


def _large_box(min_pixels: int, cell_h: int, cell_w: int, rng) -> tuple[int, int]:
    low_h, max_h, max_w, need = _large_dims(min_pixels, cell_h, cell_w)
    bh = int(rng.integers(low_h, max_h + 1))
    return bh, int(rng.integers(min(math.ceil(need / (bh - 2)) + 2, max_w), max_w + 1))


LAYOUTS = ((2, 2), (1, 2))  # cell grids tried in order: four cells, else two side by side


def layout(image_size: int, min_pixels: int) -> tuple[int, int] | None:
    """The densest grid whose cells hold a large object, or None when the image is too small."""
    for rows, cols in LAYOUTS:
        if _large_dims(min_pixels, image_size // rows, image_size // cols) is not None:
            return rows, cols
    return None


def _small_side_range(min_pixels: int) -> tuple[int, int]:
    hi = min(SMALL_SIDE[1], math.isqrt(min_pixels // 2))
    return min(SMALL_SIDE[0], hi), hi


# --- one image ----------------------------------------------------------------------------------------------------


@dataclass
class SynthObject:
    cls: int
    polygons: list[np.ndarray]
    mask: np.ndarray  # bool (H, W)


def _object(c: int, large: bool, cell_box, min_pixels: int, h: int, w: int, rng, looks: str = "shared"
            ) -> SynthObject:
    y0, x0, y1, x1 = cell_box
    shape = class_look(c, looks)[0]
    if large:
        box_h, box_w = _large_box(min_pixels, y1 - y0, x1 - x0, rng)
        if rng.random() < 0.5 and y1 - y0 == x1 - x0:  # square cells: either orientation
            box_h, box_w = box_w, box_h
    else:
        lo, hi = _small_side_range(min_pixels)
        box_h = box_w = int(rng.integers(lo, hi + 1))
    # keep two free pixels to the cell's edges for the 255 ring
    cx = rng.uniform(x0 + box_w / 2 + 2, x1 - box_w / 2 - 2)
    cy = rng.uniform(y0 + box_h / 2 + 2, y1 - box_h / 2 - 2)
    degrees = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    polygons = polygons_at(shape, cx, cy, box_h, box_w, degrees)
    mask = rasterise(polygons, h, w)
    if large and mask.sum() < min_pixels:  # a rotated square or plus fills less of its box: draw it upright
        polygons = polygons_at(shape, cx, cy, box_h, box_w)
        mask = rasterise(polygons, h, w)
    if large and mask.sum() < min_pixels:  # cannot happen with the fill table; guard the guarantee anyway
        raise AssertionError(f"synthetic class {c}: large {shape} {box_h}x{box_w} has only {mask.sum()} px")
    return SynthObject(c, polygons, mask)


def synth_image(dataset: str, primary: int, mixed: str | None, config: SynthConfig, rng: np.random.Generator):
    """Draw one image; returns (RGB uint8 image, class map uint8, objects in drawing order)."""
    size = config.image_size
    h = w = size
    rows, cols = layout(size, config.min_pixels)
    ch, cw = size // rows, size // cols
    boxes = [(r * ch, q * cw, (r + 1) * ch, (q + 1) * cw) for r in range(rows) for q in range(cols)]
    if rows == 1 and rng.random() < 0.5:  # two cells: side by side or stacked
        boxes = [(x0, y0, x1, y1) for y0, x0, y1, x1 in boxes]
    order = rng.permutation(len(boxes))
    groups = _group_members(dataset)
    same = groups[purity_group(dataset, primary)]
    others = [c for c in range(1, NUM_CLASSES[dataset] + 1) if c not in same]

    plan = [(primary, True)]
    if mixed is not None:
        plan.append((int(rng.choice(others)), mixed == "large"))
    while len(plan) < len(boxes):
        u = rng.random()
        if u < 0.35:
            plan.append((int(rng.choice(same)), True))
        elif u < 0.7:
            plan.append((int(rng.choice(same)), False))
        else:
            plan.append(None)
    objects = []
    for k, item in enumerate(plan):
        if item is not None:
            c, large = item
            objects.append(_object(c, large, boxes[order[k]], config.min_pixels, h, w, rng, config.looks))

    image = background(h, w, rng)
    labels = np.zeros((h, w), np.uint8)
    for obj in objects:
        paint_object(image, obj.mask, obj.cls, rng, config.looks)
        labels[obj.mask] = obj.cls
    return finish(image, rng), labels, objects


def _plan(dataset: str, per_class: int):
    """(primary class, mixed kind) for each image: classes cycle, so every class gets per_class primaries."""
    n = NUM_CLASSES[dataset]
    out = []
    for r in range(per_class):
        mixed = "large" if r == MIXED_LARGE_ROUND else "small" if r == MIXED_SMALL_ROUND else None
        out += [(c, mixed) for c in range(1, n + 1)]
    return out


def _rng(config: SynthConfig, split: str, index: int) -> np.random.Generator:
    tag = {"pascal": 1, "coco": 2}[config.dataset]
    return np.random.default_rng([config.seed, tag, {"train": 0, "val": 1}[split], index])


def _jpeg(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=90)


def voc_ring(labels: np.ndarray) -> np.ndarray:
    """VOC-style void border: background pixels 4-adjacent to an object become 255 (objects keep their area)."""
    obj = labels > 0
    near = np.zeros_like(obj)
    near[1:] |= obj[:-1]
    near[:-1] |= obj[1:]
    near[:, 1:] |= obj[:, :-1]
    near[:, :-1] |= obj[:, 1:]
    out = labels.copy()
    out[near & ~obj] = IGNORE_LABEL
    return out


def voc_palette() -> list[int]:
    """The VOC colour map: bits of the index spread over the high bits of R, G and B."""
    idx = np.arange(256)
    rgb = np.zeros((256, 3), int)
    for bit in range(8):
        for ch in range(3):
            rgb[:, ch] |= ((idx >> (3 * bit + ch)) & 1) << (7 - bit)
    return rgb.ravel().tolist()


_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by svf synth".ljust(116)


def _write_sbd_mat(path: Path, labels: np.ndarray) -> None:
    """An SBD-style ``cls`` file (struct GTcls with Segmentation); the dated header is fixed for determinism."""
    import scipy.io

    present = np.unique(labels[labels > 0]).astype(np.uint8)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"GTcls": {"Segmentation": labels, "Boundaries": np.zeros((1, len(present)), object),
                                     "CategoriesPresent": present}}, do_compression=True)
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER  # the first 116 bytes are free text holding the creation time
    path.write_bytes(bytes(data))


# --- PASCAL -------------------------------------------------------------------------------------------------------


def synth_pascal(out_dir, config: SynthConfig) -> dict:
    """Write a VOC2012 + SBD style raw dataset; returns a manifest (also saved as ``synth.json``)."""
    from PIL import Image

    config.check()
    out = Path(out_dir)
    voc = out / "VOCdevkit" / "VOC2012"
    sbd = out / "benchmark_RELEASE" / "dataset"
    palette = voc_palette()
    lists = {"voc_train": [], "voc_val": [], "sbd_train_noval": []}
    for split, per_class, year in (("train", config.train_per_class, 2008), ("val", config.val_per_class, 2007)):
        for i, (primary, mixed) in enumerate(_plan("pascal", per_class)):
            image_id = f"{year}_{i:06d}"
            image, labels, _ = synth_image("pascal", primary, mixed, config, _rng(config, split, i))
            # sources like the real data: val and 3/10 of train VOC only, 2/10 in both, the rest SBD only
            in_voc = split == "val" or i % 10 < 5
            in_sbd = split == "train" and i % 10 >= 3
            _jpeg(image, voc / "JPEGImages" / f"{image_id}.jpg")  # VOC2012 holds every SBD image too
            if in_voc:
                png = Image.fromarray(voc_ring(labels), mode="P")
                png.putpalette(palette)
                (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
                png.save(voc / "SegmentationClass" / f"{image_id}.png")
                lists["voc_" + split].append(image_id)
            if in_sbd:
                _jpeg(image, sbd / "img" / f"{image_id}.jpg")
                (sbd / "cls").mkdir(parents=True, exist_ok=True)
                _write_sbd_mat(sbd / "cls" / f"{image_id}.mat", labels)
                lists["sbd_train_noval"].append(image_id)
    seg = voc / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / "train.txt").write_text("".join(f"{i}\n" for i in lists["voc_train"]))
    (seg / "val.txt").write_text("".join(f"{i}\n" for i in lists["voc_val"]))
    (out / "train_noval.txt").write_text("".join(f"{i}\n" for i in lists["sbd_train_noval"]))
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in lists["sbd_train_noval"]))
    return _manifest(out, config, {k: len(v) for k, v in lists.items()})


# --- COCO ---------------------------------------------------------------------------------------------------------


def _coco_subset(out: Path, subset: str, split: str, per_class: int, config: SynthConfig, id_base: int,
                 ann_base: int) -> dict:
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    plan = _plan("coco", per_class) + [(None, None)] * config.empty_images
    for i, (primary, mixed) in enumerate(plan):
        rng = _rng(config, split, i)
        image_id = id_base + i
        name = f"COCO_{subset}_{image_id:012d}.jpg"
        if primary is None:  # an image nobody annotated (or only as a crowd): preparation must skip it
            image = rng.integers(0, 255, (config.image_size, config.image_size, 3), dtype=np.uint8)
            objects = []
        else:
            image, _, objects = synth_image("coco", primary, mixed, config, rng)
        _jpeg(image, out / subset / name)
        h, w = image.shape[:2]
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for obj in objects:
            ys, xs = np.nonzero(obj.mask)
            annotations.append({
                "id": ann_base + len(annotations), "image_id": image_id,
                "category_id": COCO_CATEGORY_IDS[obj.cls - 1], "iscrowd": 0, "area": float(obj.mask.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                "segmentation": [np.round(p, 2).ravel().tolist() for p in obj.polygons]})
        if (primary is None and i % 2) or (primary is not None and rng.random() < config.crowd_fraction):
            crowd = np.zeros((h, w), np.uint8, order="F")
            crowd[h - 6:h - 1, 1:6] = 1  # a corner patch; crowd regions are never drawn into the masks
            rle = mask_utils.encode(np.asfortranarray(crowd))
            annotations.append({
                "id": ann_base + len(annotations), "image_id": image_id, "category_id": 1, "iscrowd": 1,
                "area": 25.0, "bbox": [1.0, h - 6.0, 5.0, 5.0],
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}})
    categories = [{"id": cid, "name": name, "supercategory": "synthetic"}
                  for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]
    data = {"info": {"description": "svf synthetic COCO-style data", "seed": config.seed}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"instances_{subset}.json").write_text(json.dumps(data))
    return {"images": len(images), "annotations": len(annotations)}


def synth_coco(out_dir, config: SynthConfig) -> dict:
    """Write a COCO 2014 style raw dataset; returns a manifest (also saved as ``synth.json``)."""
    config.check()
    out = Path(out_dir)
    counts = {
        "train2014": _coco_subset(out, "train2014", "train", config.train_per_class, config, id_base=1,
                                  ann_base=1),
        "val2014": _coco_subset(out, "val2014", "val", config.val_per_class, config, id_base=500000,
                                ann_base=10_000_000),
    }
    return _manifest(out, config, counts)


def _manifest(out: Path, config: SynthConfig, counts: dict) -> dict:
    manifest = {"synthetic": True, "config": asdict(config), "counts": counts,
                "guaranteed_pool_size": {s: guaranteed_pool_size(config, s) for s in ("train", "val")}}
    (out / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def synth(out_dir, config: SynthConfig) -> dict:
    """Generate the raw synthetic dataset named by ``config.dataset`` into ``out_dir``."""
    return (synth_pascal if config.dataset == "pascal" else synth_coco)(out_dir, config)


def is_synthetic(raw_dir) -> bool:
    return (Path(raw_dir) / "synth.json").is_file()


__all__ = ["SynthConfig", "class_look", "guaranteed_pool_size", "is_synthetic", "purity_group", "synth", "synth_coco",
           "synth_image", "synth_pascal", "voc_palette", "voc_ring"]
