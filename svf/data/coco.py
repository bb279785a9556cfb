"""COCO-20i preparation: COCO 2014 images + instances json -> per-image class masks and lists.

For every image with at least one non-crowd annotation (82,081 train / 40,137 val on real data), a grey PNG
``annotations/<subset>/<id>.png`` is drawn: 0 background, value = index of the category in category-id order + 1,
every polygon of every non-crowd annotation in the json's annotation order (later annotations overwrite earlier
ones), non-crowd RLE segmentations decoded too; crowd annotations are ignored. This follows the mask script
PFENet/BAM used, except that polygons are rasterised by pycocotools rather than ``cv2.fillPoly`` (object borders
can differ by about a pixel). Images are placed at ``<subset>/<id>.jpg``. The train list is sorted by id (PFENet's
follows an unrecorded ``os.listdir`` order; training draws a random order anyway). The val list order matters: the
authors' ``validate()`` and BAM's ``test.py`` walk it in file order and stop after 1000 episodes, so only its first
~1000 images are ever queries. ``val_order="reference"`` (default) writes it in PFENet's ``val.txt`` order
(``config/reference_splits/coco/val2014_images.txt``; ids it does not list follow, sorted), ``"sorted"`` by id.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from .datasets import (COCO_CLASSES, place_file, read_id_list, read_json_with_keys, write_dataset_json, write_id_list,
                       write_mask)

SUBSETS = {"train": "train2014", "val": "val2014"}
PARALLEL_MIN_IMAGES = 64  # below this, worker start-up costs more than it saves
REAL_IMAGE_COUNTS = {"train2014": 82783, "val2014": 40504}  # images in the real instances_*2014.json


def load_instances(path: str | Path) -> dict:
    path = Path(path)
    data = read_json_with_keys(path, ("images", "annotations", "categories"), "COCO annotation file missing")
    return data


def category_values(categories: list[dict], where: str = "categories") -> dict[int, int]:
    """``{category_id: mask value}``: the position of the category in id order + 1 (1 = person ... 80)."""
    ids = sorted(int(c["id"]) for c in categories)
    if len(ids) != len(COCO_CLASSES):
        raise ValueError(f"{where}: {len(ids)} categories, expected {len(COCO_CLASSES)}")
    return {cid: i + 1 for i, cid in enumerate(ids)}


def annotation_mask(segmentation, height: int, width: int, where: str = "annotation") -> np.ndarray:
    """Binary (H, W) mask of one annotation: all its polygons, or its RLE (compressed or not)."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
            polygons = [p for p in segmentation if len(p) >= 6]  # fewer than 3 points has no area
            if not polygons:
                return np.zeros((height, width), np.uint8)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:  # compressed RLE
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword notice, harmless here
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_utils.decode(rle)
    except Exception as exc:
        raise ValueError(f"{where}: bad segmentation ({exc})") from exc


def _draw_one(job) -> None:
    image_id, height, width, anns, image_src, out, link, subset = job
    mask = np.zeros((height, width), np.uint8)
    for value, segmentation, ann_id in anns:
        m = annotation_mask(segmentation, height, width, where=f"annotation {ann_id} of {image_id}")
        if m.shape != mask.shape:
            raise ValueError(f"annotation {ann_id} of {image_id}: mask {m.shape} vs image {mask.shape}")
        mask[m.astype(bool)] = value
    place_file(image_src, out / subset / f"{image_id}.jpg", link)
    write_mask(out / "annotations" / subset / f"{image_id}.png", mask)


def _jobs(data: dict, images_dir: Path, out: Path, link: str, subset: str, where: str):
    values = category_values(data["categories"], where)
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:  # json order = drawing order
        if ann.get("iscrowd", 0):
            continue
        cid = int(ann["category_id"])
        if cid not in values:
            raise ValueError(f"{where}: annotation {ann.get('id')} has unknown category_id {cid}")
        by_image.setdefault(int(ann["image_id"]), []).append((values[cid], ann["segmentation"], ann.get("id")))
    jobs = []
    for img in data["images"]:
        anns = by_image.get(int(img["id"]))
        if not anns:
            continue  # no non-crowd annotation: not in the lists
        image_id = Path(img["file_name"]).stem
        jobs.append((image_id, int(img["height"]), int(img["width"]), anns, images_dir / img["file_name"], out, link,
                     subset))
    return sorted(jobs, key=lambda j: j[0])


VAL_ORDERS = ("reference", "sorted")


def reference_order(ids, reference_list) -> list[str]:
    """``ids`` in the order of ``reference_list`` (a file of ids or image names); ids it lacks follow, sorted."""
    ids = list(ids)
    wanted = set(ids)
    ordered = [i for i in dict.fromkeys(read_id_list(reference_list)) if i in wanted]
    seen = set(ordered)
    return ordered + sorted(i for i in ids if i not in seen)


def prepare_coco(raw_dir, out_dir, link: str = "hardlink", workers: int = 1, progress: bool = True,
                 reference_dir=None, source: str = "coco2014", val_order: str = "reference") -> dict:
    """Build the prepared COCO dataset from ``raw_dir`` ({train2014,val2014}/, annotations/instances_*.json).

    ``val_order`` (see the module docstring) uses ``<reference_dir>/coco/val2014_images.txt`` when it exists."""
    if val_order not in VAL_ORDERS:
        raise ValueError(f"val_order must be one of {VAL_ORDERS}, got {val_order!r}")
    from tqdm import tqdm

    raw, out = Path(raw_dir), Path(out_dir)
    summary: dict = {}
    for split, subset in SUBSETS.items():
        ann_path = raw / "annotations" / f"instances_{subset}.json"
        data = load_instances(ann_path)
        images_dir = raw / subset
        if not images_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder missing: {images_dir}")
        jobs = _jobs(data, images_dir, out, link, subset, str(ann_path))
        summary[f"{subset}_images_in_json"] = len(data["images"])
        del data  # the train json is large; free it before forking workers
        bar = dict(total=len(jobs), desc=f"prepare coco {subset}", unit="img", file=sys.stderr,
                   disable=not progress, mininterval=2.0)
        if workers > 1 and len(jobs) >= PARALLEL_MIN_IMAGES:
            import multiprocessing as mp

            with mp.Pool(workers) as pool:
                for _ in tqdm(pool.imap_unordered(_draw_one, jobs, chunksize=16), **bar):
                    pass
        else:
            for job in tqdm(jobs, **bar):
                _draw_one(job)
        ids = [j[0] for j in jobs]
        order_file = Path(reference_dir) / "coco" / "val2014_images.txt" if reference_dir is not None else None
        if split == "val" and val_order == "reference" and order_file is not None and order_file.is_file():
            ids = reference_order(ids, order_file)
            summary["val_order"] = str(order_file)
        write_id_list(out / "lists" / f"{split}.txt", ids)
        summary[split] = len(ids)
    write_dataset_json(out, "coco", source=source)
    if reference_dir is not None and summary["val2014_images_in_json"] == REAL_IMAGE_COUNTS["val2014"]:
        summary["reference_problems"] = check_val_against_reference(out / "lists" / "val.txt", reference_dir)
    return summary


def check_val_against_reference(val_list, reference_dir) -> list[str]:
    """The val ids of the real COCO val2014 must be PFENet's 40,137 (as a set); returns the differences."""
    ref_path = Path(reference_dir) / "coco" / "val2014_images.txt"
    if not ref_path.is_file():
        return [f"reference list {ref_path} missing"]
    ours, ref = read_id_list(val_list), read_id_list(ref_path)
    problems = []
    if set(ours) != set(ref):
        problems.append(f"val list: {len(ours)} ids vs PFENet's {len(ref)} ({len(set(ref) - set(ours))} missing, "
                        f"{len(set(ours) - set(ref))} extra)")
    for p in problems:
        warnings.warn(f"COCO lists differ from PFENet's: {p}", stacklevel=3)
    return problems
