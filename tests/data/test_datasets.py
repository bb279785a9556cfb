"""Shared dataset constants, fold classes and open_dataset on a tiny prepared directory."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from svf.data.datasets import (
    COCO_CATEGORY_IDS, COCO_CLASSES, PASCAL_CLASSES, base_classes, fold_classes, novel_classes, open_dataset,
    read_id_list, read_mask, write_dataset_json, write_id_list,
)


def test_pascal_folds_partition_the_classes():
    assert novel_classes("pascal", 0) == [1, 2, 3, 4, 5]
    assert novel_classes("pascal", 3) == [16, 17, 18, 19, 20]
    assert base_classes("pascal", 1) == [1, 2, 3, 4, 5] + list(range(11, 21))
    allnovel = sorted(c for k in range(4) for c in novel_classes("pascal", k))
    assert allnovel == list(range(1, 21))


def test_coco_interleaved_fold0_names_match_pfenet_split():
    novel = novel_classes("coco", 0)
    assert novel == list(range(1, 78, 4))
    names = [COCO_CLASSES[c - 1] for c in novel]
    assert names[:5] == ["person", "airplane", "boat", "parking meter", "dog"]
    assert names[-1] == "scissors"
    assert [COCO_CLASSES[c - 1] for c in novel_classes("coco", 3)][-1] == "toothbrush"
    fc = fold_classes("coco", 2)
    assert len(fc.base) == 60 and not set(fc.base) & set(fc.novel)


def test_coco_contiguous_and_bad_arguments():
    assert novel_classes("coco", 1, "contiguous") == list(range(21, 41))
    with pytest.raises(ValueError, match="coco_split"):
        novel_classes("coco", 0, "panet")
    with pytest.raises(ValueError, match="fold"):
        novel_classes("pascal", 4)
    with pytest.raises(ValueError, match="unknown dataset"):
        novel_classes("ade", 0)


def test_constants_sizes():
    assert len(PASCAL_CLASSES) == 20 and len(COCO_CLASSES) == 80
    assert len(COCO_CATEGORY_IDS) == 80 and list(COCO_CATEGORY_IDS) == sorted(set(COCO_CATEGORY_IDS))
    assert COCO_CATEGORY_IDS[-1] == 90


def test_open_dataset_paths_and_lists(tmp_path):
    write_dataset_json(tmp_path, "coco", source="test")
    write_id_list(tmp_path / "lists" / "train.txt", ["COCO_train2014_000000000009"])
    write_id_list(tmp_path / "lists" / "val.txt", ["COCO_val2014_000000000042"])
    ds = open_dataset(tmp_path)
    assert ds.name == "coco" and ds.num_classes == 80 and ds.info["source"] == "test"
    assert ds.ids("val") == ["COCO_val2014_000000000042"]
    assert ds.image_path("COCO_val2014_000000000042") == tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"
    assert ds.mask_path("COCO_train2014_000000000009") == (
        tmp_path / "annotations" / "train2014" / "COCO_train2014_000000000009.png")
    with pytest.raises(ValueError, match="neither"):
        ds.image_path("2007_000032")


def test_open_dataset_errors_name_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        open_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "pascal", "num_classes": 20}))
    with pytest.raises(ValueError, match="class_names"):
        open_dataset(tmp_path)
    write_dataset_json(tmp_path, "pascal")
    with pytest.raises(FileNotFoundError, match="train.txt"):
        open_dataset(tmp_path).ids("train")


def test_read_mask_keeps_palette_indices_and_names_bad_files(tmp_path):
    arr = np.array([[0, 1, 255], [15, 20, 0]], dtype=np.uint8)
    img = Image.fromarray(arr, mode="P")
    img.putpalette([255, 255, 255] * 256)  # colours must not leak into the values read
    img.save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), arr)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        read_mask(tmp_path / "bad.png")


def test_read_id_list_accepts_pfenet_lines(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("JPEGImages/2007_000032.jpg SegmentationClassAug/2007_000032.png\n\n2007_000039\n")
    assert read_id_list(p) == ["2007_000032", "2007_000039"]
