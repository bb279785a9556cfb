"""Fold lists and support pools (PFENet/BAM make_dataset rules) and the comparison with the authors' lists."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svf.data.datasets import MIN_PIXELS, novel_classes, open_dataset, read_id_list, write_dataset_json, write_id_list
from svf.data.splits import (
    DEFAULT_REFERENCE_DIR, build_fold_list, compare_with_reference, fold_list_for, load_fold, load_image_classes,
    make_splits, mask_class_counts,
)

REF = DEFAULT_REFERENCE_DIR / "pascal"


def _reference_ids():
    return read_id_list(REF / "voc_sbd_merge_noduplicate_images.txt"), read_id_list(REF / "val_images.txt")


def test_rules_reproduce_reference_from_its_own_class_sets():
    """Large classes per image recovered from the published 'original' pools; rules + order must give the lists."""
    train, val = _reference_ids()
    image_classes = {i: {} for i in train + val}
    for k in range(4):
        for split in ("train", "val"):
            for c, ids in load_fold(REF, "original", split, k).pools.items():
                for i in ids:
                    image_classes[i][c] = MIN_PIXELS
    for k in range(4):
        ref_orig = load_fold(REF, "original", "train", k)
        assert fold_list_for("original", "train", "pascal", k, train, image_classes) == ref_orig
        assert fold_list_for("original", "val", "pascal", k, val, image_classes) == load_fold(REF, "dagger", "val", k)
        # dagger: images dropped from the original list had some novel pixel; give them a 1-pixel novel object
        ref_dagger = load_fold(REF, "dagger", "train", k)
        dropped = set(ref_orig.images) - set(ref_dagger.images)
        novel = novel_classes("pascal", k)[0]
        with_small_novel = {i: ({**c, novel: c.get(novel, 0) + 1} if i in dropped else c)
                            for i, c in image_classes.items()}
        assert fold_list_for("dagger", "train", "pascal", k, train, with_small_novel) == ref_dagger


def test_build_fold_list_rules_by_hand():
    ids = ["a", "b", "c", "d", "e"]
    ic = {
        "a": {1: 3000, 2: 10},   # base 1 large; novel 2 tiny -> original keeps, dagger drops
        "b": {1: 100},           # only small objects -> dropped everywhere
        "c": {3: 5000, 1: 2048},  # two base classes, 2048 exactly counts
        "d": {},                 # background only
        "e": {2: 9000},          # novel only
    }
    orig = build_fold_list(ids, ic, [1, 3], filter_intersection=False)
    assert orig.images == ["a", "c"] and orig.pools == {1: ["a", "c"], 3: ["c"]}
    dag = build_fold_list(ids, ic, [1, 3], filter_intersection=True)
    assert dag.images == ["c"] and dag.pools == {1: ["c"], 3: ["c"]}
    val = build_fold_list(ids, ic, [2], filter_intersection=False)
    assert val.images == ["e"] and val.pools == {2: ["e"]}
    assert build_fold_list(ids, ic, [1, 3], False, min_pixels=50).images == ["a", "b", "c"]


def test_mask_class_counts_vectorised_and_rejects_bad_values():
    m = np.array([[0, 1, 1], [255, 20, 0]], dtype=np.uint8)
    assert mask_class_counts(m, 20) == {1: 2, 20: 1}
    with pytest.raises(ValueError, match=r"m\.png: values \[21\]"):
        mask_class_counts(np.array([[21, 255]], dtype=np.uint8), 20, where="m.png")


def _tiny_pascal(root: Path, masks: dict[str, np.ndarray], train, val):
    write_dataset_json(root, "pascal", source="test")
    (root / "SegmentationClassAug").mkdir(parents=True)
    for i, m in masks.items():
        Image.fromarray(m, mode="L").save(root / "SegmentationClassAug" / f"{i}.png")
    write_id_list(root / "lists" / "train.txt", train)
    write_id_list(root / "lists" / "val.txt", val)
    return open_dataset(root)


def test_make_splits_writes_layout_and_summary(tmp_path):
    def mask(blocks):
        m = np.zeros((20, 20), np.uint8)
        for c, (r0, r1) in blocks:
            m[r0:r1] = c
        return m

    masks = {"t0": mask([(6, (0, 10)), (1, (10, 11))]),   # base 6 large, novel 1 tiny (fold 0)
             "t1": mask([(7, (0, 20))]),
             "t2": mask([(7, (0, 1))]),                   # small only
             "v0": mask([(1, (0, 5)), (255, (5, 6))]),
             "v1": mask([(6, (0, 10))])}
    ds = _tiny_pascal(tmp_path / "ds", masks, ["t0", "t1", "t2"], ["v0", "v1"])
    summary, check = make_splits(ds, tmp_path / "splits", folds=[0, 1], min_pixels=100, progress=False)
    out = tmp_path / "splits"
    assert load_image_classes(out)["t0"] == {1: 20, 6: 200}
    assert read_id_list(out / "original/train/fold0_images.txt") == ["t0", "t1"]
    assert read_id_list(out / "dagger/train/fold0_images.txt") == ["t1"]
    assert read_id_list(out / "dagger/val/fold0_images.txt") == ["v0"]
    assert read_id_list(out / "dagger/val/fold1_images.txt") == ["v1"]
    pools = json.loads((out / "original/train/fold1_support_pools.json").read_text())
    assert pools["1"] == [] and pools["11"] == [] and "6" not in pools  # fold-1 base classes only
    assert not (out / "original/train/fold2_images.txt").exists()
    written = json.loads((out / "splits_summary.json").read_text())
    assert written["files"]["dagger/train/fold0"]["images"] == 1
    assert written["files"]["original/val/fold1"]["pool_sizes"] == {"6": 1, "7": 0, "8": 0, "9": 0, "10": 0}
    assert not check.applicable and "image set differs" in check.reason


def test_holdout_lists_hold_training_images_with_a_novel_class(tmp_path):
    masks = {"t0": np.pad(np.full((10, 20), 6, np.uint8), ((0, 10), (0, 0))),          # base only
             "t1": np.pad(np.full((10, 20), 1, np.uint8), ((0, 10), (0, 0))),          # novel 1 (fold 0)
             "t2": np.pad(np.full((10, 20), 2, np.uint8), ((0, 10), (0, 0))) + 0,      # novel 2
             "v0": np.pad(np.full((10, 20), 1, np.uint8), ((0, 10), (0, 0)))}
    masks["t2"][15:, :] = 6  # and a base object: still held out (a novel class is there)
    ds = _tiny_pascal(tmp_path / "ds", masks, ["t0", "t1", "t2"], ["v0"])
    make_splits(ds, tmp_path / "splits", folds=[0], min_pixels=100, progress=False)
    out = tmp_path / "splits"
    for setting in ("dagger", "original"):
        assert read_id_list(out / setting / "holdout/fold0_images.txt") == ["t1", "t2"]
        pools = json.loads((out / setting / "holdout/fold0_support_pools.json").read_text())
        assert pools["1"] == ["t1"] and pools["2"] == ["t2"] and pools["3"] == []
    assert read_id_list(out / "dagger/train/fold0_images.txt") == ["t0"]  # dagger never trains on them


def test_no_validation_episode_of_the_holdout_shares_an_image_with_a_test_episode(pascal_data):
    from svf.data.episodes import eval_episodes

    for fold in range(4):
        kwargs = dict(setting="dagger", fold=fold, shot=5, seed=321, n_episodes=300, size=64)
        test = eval_episodes(pascal_data["root"], pascal_data["splits"], **kwargs).episodes
        held = eval_episodes(pascal_data["root"], pascal_data["splits"], split="holdout", **kwargs).episodes
        test_images = {i for e in test for i in (e.query_id, *e.support_ids)}
        held_images = {i for e in held for i in (e.query_id, *e.support_ids)}
        assert held_images and test_images and not held_images & test_images
        train = set(read_id_list(Path(pascal_data["splits"]) / f"dagger/train/fold{fold}_images.txt"))
        assert not held_images & train  # and the dagger setting never trains on them


def _fake_real_pascal(tmp_path: Path):
    """A dataset with the real PASCAL id lists (no masks) and fold files copied from the reference."""
    train, val = _reference_ids()
    root = tmp_path / "ds"
    write_dataset_json(root, "pascal")
    write_id_list(root / "lists" / "train.txt", train)
    write_id_list(root / "lists" / "val.txt", val)
    splits = tmp_path / "splits"
    for setting in ("dagger", "original"):
        shutil.copytree(REF / setting, splits / setting)
    return open_dataset(root), splits


def test_reference_comparison_passes_on_identical_lists(tmp_path):
    ds, splits = _fake_real_pascal(tmp_path)
    check = compare_with_reference(splits, ds, DEFAULT_REFERENCE_DIR, ["dagger", "original"], range(4), MIN_PIXELS)
    assert check.applicable and check.ok and check.files_compared == 32


def test_reference_comparison_names_differing_counts(tmp_path):
    ds, splits = _fake_real_pascal(tmp_path)
    path = splits / "dagger/train/fold2_images.txt"
    ids = read_id_list(path)
    write_id_list(path, ids[:-1])
    pools_path = splits / "original/val/fold3_support_pools.json"
    pools = json.loads(pools_path.read_text())
    pools["17"] = pools["17"][1:]
    pools_path.write_text(json.dumps(pools))
    check = compare_with_reference(splits, ds, DEFAULT_REFERENCE_DIR, ["dagger", "original"], range(4), MIN_PIXELS)
    assert check.applicable and not check.ok
    assert check.mismatches == [
        "dagger/train/fold2_images.txt: 2751 images vs reference 2752 (1 missing, 0 extra)",
        "original/val/fold3_support_pools.json: class 17: 52 images vs reference 53",
    ]
    # a different pixel threshold is not comparable with the reference
    assert not compare_with_reference(splits, ds, DEFAULT_REFERENCE_DIR, ["dagger"], [0], 100).applicable
