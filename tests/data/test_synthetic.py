"""Synthetic raw datasets: real formats, determinism, and the pool guarantees through prepare + splits."""
from __future__ import annotations

import colorsys
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svf.data.coco import prepare_coco
from svf.data.datasets import COCO_CATEGORY_IDS, open_dataset, read_mask
from svf.data.pascal import PascalRaw, prepare_pascal, read_sbd_mat
from svf.data.splits import load_image_classes, make_splits
from svf.synthetic.looks import FULL_PALETTE, PALETTE
from svf.synthetic.raw import SynthConfig, class_look, guaranteed_pool_size, synth, voc_ring

SETTINGS_FILES = [f"{s}/{p}/fold{k}" for s in ("dagger", "original") for p in ("train", "val") for k in range(4)]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _pipeline(tmp_path: Path, config: SynthConfig, coco_split="interleaved"):
    synth(tmp_path / "raw", config)
    if config.dataset == "pascal":
        prepare_pascal(PascalRaw.under(tmp_path / "raw"), tmp_path / "prep", progress=False)
    else:
        prepare_coco(tmp_path / "raw", tmp_path / "prep", progress=False)
    ds = open_dataset(tmp_path / "prep")
    summary, check = make_splits(ds, tmp_path / f"splits_{coco_split}", coco_split=coco_split,
                                 min_pixels=config.min_pixels, progress=False)
    return ds, summary, check


def _assert_pools(summary, config):
    for name in SETTINGS_FILES:
        info = summary["files"][name]
        assert info["images"] > 0, name
        floor = guaranteed_pool_size(config, name.split("/")[1])
        assert min(info["pool_sizes"].values()) >= floor, (name, info["pool_sizes"], floor)


def test_pascal_small_pipeline_meets_pool_bound_and_exercises_filters(tmp_path):
    config = SynthConfig("pascal", train_per_class=3, val_per_class=2, seed=3)
    ds, summary, check = _pipeline(tmp_path, config)
    assert len(ds.ids("train")) == 60 and len(ds.ids("val")) == 40
    _assert_pools(summary, config)
    files = summary["files"]
    assert all(files[f"dagger/train/fold{k}"]["images"] < files[f"original/train/fold{k}"]["images"]
               for k in range(4))  # mixed images give the dagger filter work
    counts = [n for classes in load_image_classes(tmp_path / "splits_interleaved").values() for n in classes.values()]
    assert min(counts) < config.min_pixels <= max(counts)  # small objects exist, large ones pass the rule
    assert not check.applicable  # synthetic data is never compared with the real reference


def test_pascal_demo_size_has_six_images_in_every_pool(tmp_path):
    config = SynthConfig("pascal")  # the demo defaults
    _, summary, _ = _pipeline(tmp_path, config)
    _assert_pools(summary, config)
    assert min(min(f["pool_sizes"].values()) for f in summary["files"].values()) >= 6


@pytest.mark.parametrize("dataset", ["pascal", "coco"])
def test_demo_defaults_guarantee_six_per_pool(dataset):
    config = SynthConfig(dataset)
    assert guaranteed_pool_size(config, "train") >= 6 and guaranteed_pool_size(config, "val") >= 6
    config.check()


def test_coco_small_pipeline_both_splits(tmp_path):
    config = SynthConfig("coco", train_per_class=2, val_per_class=1, empty_images=4, crowd_fraction=0.2, seed=1)
    ds, summary, _ = _pipeline(tmp_path, config)
    assert len(ds.ids("train")) == 160 and len(ds.ids("val")) == 80  # empty/crowd-only images skipped
    _assert_pools(summary, config)
    contiguous = make_splits(ds, tmp_path / "contig", coco_split="contiguous", progress=False)[0]
    _assert_pools(contiguous, config)
    data = json.loads((tmp_path / "raw/annotations/instances_train2014.json").read_text())
    assert len(data["images"]) == 164 and any(a["iscrowd"] for a in data["annotations"])
    assert any(len(a["segmentation"]) == 2 for a in data["annotations"] if not a["iscrowd"])  # the plus: 2 polygons
    assert {a["category_id"] for a in data["annotations"]} <= set(COCO_CATEGORY_IDS)


def test_real_raw_formats(tmp_path):
    synth(tmp_path, SynthConfig("pascal", train_per_class=1, val_per_class=1))
    voc = tmp_path / "VOCdevkit/VOC2012"
    val_id = (voc / "ImageSets/Segmentation/val.txt").read_text().split()[0]
    with Image.open(voc / "SegmentationClass" / f"{val_id}.png") as img:
        assert img.mode == "P" and img.getpalette()[3:6] == [128, 0, 0]  # VOC colour of class 1
        values = set(np.unique(np.asarray(img)).tolist())
    assert 255 in values and 0 in values
    sbd_id = (tmp_path / "train_noval.txt").read_text().split()[0]
    mask = read_sbd_mat(tmp_path / "benchmark_RELEASE/dataset/cls" / f"{sbd_id}.mat")
    assert 255 not in mask and mask.max() > 0
    assert not set((tmp_path / "train_noval.txt").read_text().split()) & set(
        (voc / "ImageSets/Segmentation/val.txt").read_text().split())


def test_deterministic_from_seed(tmp_path):
    config = SynthConfig("pascal", train_per_class=1, val_per_class=1, seed=7)
    synth(tmp_path / "a", config)
    synth(tmp_path / "b", config)
    synth(tmp_path / "c", SynthConfig("pascal", train_per_class=1, val_per_class=1, seed=8))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_fold_private_looks_set_each_folds_classes_apart_from_every_other_pascal_class():
    shared = [class_look(c) for c in range(1, 81)]
    private = [class_look(c, "fold_private") for c in range(1, 81)]
    assert len(set(private)) == 80 and private[20:] == shared[20:]  # COCO's other 60 keep their looks
    assert all(look[2] < len(PALETTE) for look in shared)  # the demo's world: the 6 colours as before
    assert (FULL_PALETTE[:len(PALETTE)] == PALETTE).all()
    for fold in range(4):
        novel, base = private[5 * fold:5 * fold + 5], private[:5 * fold] + private[5 * fold + 5:20]
        assert len({look[0] for look in novel}) == len({look[1] for look in novel}) == 1  # one shape and texture
        assert len({look[2] for look in novel}) == 5  # told apart by hue alone
        for attribute in range(3):  # no base class wears the fold's shape, texture or any of its hues
            assert not {look[attribute] for look in novel} & {look[attribute] for look in base}
    hues = [colorsys.rgb_to_hsv(*(FULL_PALETTE[look[2]] / 255))[0] * 360 for look in private[:20]]
    assert np.allclose(np.diff(hues[:5]), 18, atol=0.5) and all(90 * f <= hues[5 * f] < 90 * f + 1 for f in range(4))


def test_fold_private_looks_change_the_images_and_are_refused_for_coco(tmp_path):
    config = SynthConfig("pascal", train_per_class=1, val_per_class=1, image_size=64, min_pixels=256)
    synth(tmp_path / "shared", config)
    synth(tmp_path / "private", SynthConfig(**{**asdict(config), "looks": "fold_private"}))
    labels = sorted((tmp_path / "shared").rglob("SegmentationClass/*.png"))
    assert labels and all(  # the same classes in every image (the draws are the same), drawn otherwise
        set(np.unique(Image.open(f))) == set(np.unique(Image.open(tmp_path / "private" /
                                                                   f.relative_to(tmp_path / "shared"))))
        for f in labels)
    assert _digest(tmp_path / "shared") != _digest(tmp_path / "private")
    with pytest.raises(ValueError, match="COCO keeps looks shared"):
        SynthConfig("coco", looks="fold_private").check()
    with pytest.raises(ValueError, match="unknown looks"):
        class_look(1, "pastel")


def test_class_looks_are_distinct_but_no_attribute_names_a_class_and_ring_keeps_object_area():
    looks = [class_look(c) for c in range(1, 81)]
    assert len(set(looks)) == 80  # only the combination of shape, texture and colour is unique
    for attribute in range(3):
        values = [look[attribute] for look in looks[:20]]
        assert max(values.count(v) for v in values) >= 3  # among PASCAL's 20, every attribute is shared
    for fold in range(4):  # each fold's five novel classes take all five shapes; colour alone cannot tell them
        novel = looks[5 * fold:5 * fold + 5]
        assert len({look[0] for look in novel}) == 5 and len({look[2] for look in novel}) < 5
    labels = np.zeros((5, 5), np.uint8)
    labels[2, 2] = 7
    ring = voc_ring(labels)
    assert ring[2, 2] == 7 and (ring == 255).sum() == 4


def test_too_small_images_are_refused_with_advice():
    with pytest.raises(ValueError, match="too small .*min_pixels=2048"):
        SynthConfig("pascal", image_size=80).check()
    SynthConfig("pascal", image_size=64, min_pixels=300).check()


def test_96px_images_use_two_cells_and_keep_2048(tmp_path):
    config = SynthConfig("pascal", train_per_class=3, val_per_class=2, image_size=96, seed=2)
    ds, summary, _ = _pipeline(tmp_path, config)
    _assert_pools(summary, config)
    classes = load_image_classes(tmp_path / "splits_interleaved")
    assert max(len(c) for c in classes.values()) <= 2  # at most two objects
    assert min(n for c in classes.values() for n in c.values()) < 2048 <= max(max(c.values()) for c in classes.values())
    assert read_mask(ds.mask_path(ds.ids("val")[0])).shape == (96, 96)


def test_small_images_with_lower_threshold_keep_the_rule(tmp_path):
    config = SynthConfig("pascal", train_per_class=2, val_per_class=1, image_size=64, min_pixels=300)
    _, summary, _ = _pipeline(tmp_path, config)
    _assert_pools(summary, config)
    counts = [n for c in load_image_classes(tmp_path / "splits_interleaved").values() for n in c.values()]
    assert min(counts) < 300 <= max(counts)
