"""COCO preparation on a tiny instances json: polygons, an RLE, a crowd annotation, overwrite order."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from svf.data.coco import annotation_mask, category_values, check_val_against_reference, prepare_coco
from svf.data.datasets import COCO_CATEGORY_IDS, DATASETS, open_dataset, read_mask
from svf.data.splits import DEFAULT_REFERENCE_DIR

H, W = 20, 24
CATS = [{"id": cid, "name": f"c{cid}", "supercategory": "x"} for cid in reversed(COCO_CATEGORY_IDS)]  # unsorted


def _square(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _write_subset(raw: Path, subset: str, images: list[int], anns: list[dict]):
    (raw / subset).mkdir(parents=True, exist_ok=True)
    entries = []
    for i in images:
        name = f"COCO_{subset}_{i:012d}.jpg"
        Image.fromarray(np.full((H, W, 3), i * 10 % 255, np.uint8)).save(raw / subset / name)
        entries.append({"id": i, "file_name": name, "height": H, "width": W})
    (raw / "annotations").mkdir(exist_ok=True)
    (raw / "annotations" / f"instances_{subset}.json").write_text(
        json.dumps({"images": entries, "annotations": anns, "categories": CATS}))


def _raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    rle_src = np.zeros((H, W), np.uint8, order="F")
    rle_src[15:19, 1:5] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_src))
    rle["counts"] = rle["counts"].decode("ascii")
    train_anns = [
        # image 9: person (cat 1 -> 1) with two polygons, then dog (cat 18 -> 17) drawn over part of it
        {"id": 1, "image_id": 9, "category_id": 1, "iscrowd": 0,
         "segmentation": [_square(2, 2, 10, 10), _square(14, 2, 20, 6)]},
        {"id": 2, "image_id": 9, "category_id": 18, "iscrowd": 0, "segmentation": [_square(6, 6, 12, 12)]},
        {"id": 3, "image_id": 9, "category_id": 90, "iscrowd": 0, "segmentation": rle},  # toothbrush via RLE
        # image 5: crowd only -> not listed
        {"id": 4, "image_id": 5, "category_id": 1, "iscrowd": 1, "segmentation": rle},
        # image 7: one polygon plus a crowd annotation that must not be drawn
        {"id": 5, "image_id": 7, "category_id": 3, "iscrowd": 0, "segmentation": [_square(0, 0, 5, 5)]},
        {"id": 6, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": rle},
    ]
    _write_subset(raw, "train2014", [9, 5, 7, 3], train_anns)  # image 3: no annotation at all
    _write_subset(raw, "val2014", [42], [{"id": 7, "image_id": 42, "category_id": 2, "iscrowd": 0,
                                          "segmentation": [_square(1, 1, 8, 8)]}])
    return raw


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_coco_masks_and_lists(tmp_path, workers, monkeypatch):
    import svf.data.coco as coco

    monkeypatch.setattr(coco, "PARALLEL_MIN_IMAGES", 0)  # let the tiny set take the multiprocessing path too
    raw = _raw(tmp_path)
    summary = prepare_coco(raw, tmp_path / "out", workers=workers, progress=False)
    ds = open_dataset(tmp_path / "out")
    assert ds.name in DATASETS and ds.name == "coco"
    assert ds.ids("train") == ["COCO_train2014_000000000007", "COCO_train2014_000000000009"]
    assert ds.ids("val") == ["COCO_val2014_000000000042"]
    assert summary["train2014_images_in_json"] == 4 and summary["train"] == 2
    m = read_mask(ds.mask_path("COCO_train2014_000000000009"))
    assert m.shape == (H, W)
    assert set(np.unique(m)) == {0, 1, 17, 80}
    assert m[3, 3] == 1 and m[3, 16] == 1  # both polygons of the person annotation
    assert m[8, 8] == 17  # the later dog annotation overwrites the person
    assert (m == 80).sum() == 16 and m[16, 2] == 80  # the RLE annotation
    m7 = read_mask(ds.mask_path("COCO_train2014_000000000007"))
    assert set(np.unique(m7)) == {0, 3} and m7[17, 2] == 0  # crowd RLE not drawn
    assert ds.image_path("COCO_val2014_000000000042").is_file()


def test_annotation_mask_formats_and_errors():
    poly = annotation_mask([_square(0, 0, 4, 4), [1, 1, 2, 2]], 6, 6)  # degenerate 2-point polygon skipped
    assert poly.sum() > 0 and poly[5, 5] == 0
    src = np.zeros((6, 6), np.uint8)
    src[0, :3] = 1
    unc = {"size": [6, 6], "counts": [0, 1, 5, 1, 5, 1, 23]}  # uncompressed RLE, column-major
    assert np.array_equal(annotation_mask(unc, 6, 6), src)
    with pytest.raises(ValueError, match="annotation 3: bad segmentation"):
        annotation_mask({"size": [6, 6], "counts": 5}, 6, 6, where="annotation 3")


def test_category_values_follow_id_order():
    values = category_values(CATS)
    assert values[1] == 1 and values[90] == 80 and values[13] == 12
    with pytest.raises(ValueError, match="x.json: 2 categories"):
        category_values(CATS[:2], where="x.json")


def test_missing_json_and_val_reference_check(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        prepare_coco(tmp_path, tmp_path / "out", progress=False)
    ref = (DEFAULT_REFERENCE_DIR / "coco" / "val2014_images.txt").read_text().split()
    val = tmp_path / "val.txt"
    val.write_text("\n".join(sorted(ref)) + "\n")
    assert check_val_against_reference(val, DEFAULT_REFERENCE_DIR) == []
    val.write_text("\n".join(ref[:-2]) + "\n")
    with pytest.warns(UserWarning, match="40135 ids vs PFENet's 40137 \\(2 missing, 0 extra\\)"):
        assert len(check_val_against_reference(val, DEFAULT_REFERENCE_DIR)) == 1


def test_test_queries_walk_the_val_list_in_pfenets_order(tmp_path):
    """The authors' test takes the queries of a fold in the order of PFENet's val.txt: on a synthetic COCO with a
    made-up reference order, the first episodes' queries follow that order (today's sorted ids would not)."""
    from svf.data.episodes import make_episode_list
    from svf.data.splits import load_fold, load_image_classes, make_splits
    from svf.synthetic.raw import SynthConfig, synth
    from svf.data.datasets import fold_classes

    synth(tmp_path / "raw", SynthConfig("coco", train_per_class=2, val_per_class=2, seed=4))
    val_ids = sorted(Path(p).stem for p in (tmp_path / "raw" / "val2014").glob("*.jpg"))
    order = list(np.random.default_rng(0).permutation(val_ids))
    (tmp_path / "ref" / "coco").mkdir(parents=True)
    (tmp_path / "ref" / "coco" / "val2014_images.txt").write_text("".join(f"{i}\n" for i in order))
    for val_order in ("reference", "sorted"):
        out = tmp_path / val_order
        prepare_coco(tmp_path / "raw", out / "data", progress=False, reference_dir=tmp_path / "ref",
                     val_order=val_order)
        make_splits(open_dataset(out / "data"), out / "splits", min_pixels=2048, progress=False)
        fold = load_fold(out / "splits", "dagger", "val", 0)
        novel = fold_classes("coco", 0).novel
        episodes = make_episode_list(fold.images, load_image_classes(out / "splits"), fold.pools, novel,
                                     n_episodes=len(fold.images), seed=321, shot=1)
        queries = [e.query_id for e in episodes]
        expected = [i for i in order if i in set(fold.images)] if val_order == "reference" else sorted(fold.images)
        assert queries == expected and len(queries) > 20
    assert open_dataset(tmp_path / "reference" / "data").ids("val") != open_dataset(
        tmp_path / "sorted" / "data").ids("val")
