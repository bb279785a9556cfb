"""PASCAL preparation on a tiny VOC2012 tar (palette PNGs, ImageSets) and SBD-style .mat files."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from svf.data.datasets import open_dataset, read_mask
from svf.data.download import extract
from svf.data.pascal import PascalRaw, merge_lists, prepare_pascal, read_sbd_mat

H, W = 8, 10


def _voc_palette() -> list[int]:
    """The usual VOC colour map (bit-interleaved), so colours differ from indices as in the real files."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _png_bytes(arr: np.ndarray, palette=None) -> bytes:
    img = Image.fromarray(arr, mode="P" if palette else "RGB" if arr.ndim == 3 else "L")
    if palette:
        img.putpalette(palette)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpg_bytes(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _mask(cls: int, border: bool) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[2:6, 2:7] = cls
    if border:
        m[1, 1:8] = 255
    return m


VOC_MASKS = {"2007_000001": _mask(3, True), "2007_000002": _mask(15, True), "2007_000003": _mask(20, True)}
SBD_MASKS = {"2008_000001": _mask(7, False), "2007_000002": _mask(12, False)}


def _make_raw(tmp_path: Path) -> PascalRaw:
    members = {
        "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt": b"2007_000001\n2007_000002\n",
        "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": b"2007_000003\n",
    }
    for k, (i, m) in enumerate(VOC_MASKS.items()):
        members[f"VOCdevkit/VOC2012/SegmentationClass/{i}.png"] = _png_bytes(m, _voc_palette())
        members[f"VOCdevkit/VOC2012/JPEGImages/{i}.jpg"] = _jpg_bytes(k)
    members["VOCdevkit/VOC2012/JPEGImages/2008_000001.jpg"] = _jpg_bytes(9)
    tar_path = tmp_path / "VOCtrainval_11-May-2012.tar"
    with tarfile.open(tar_path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = tmp_path / "raw"
    extract(tar_path, raw)
    cls_dir = raw / "benchmark_RELEASE/dataset/cls"
    cls_dir.mkdir(parents=True)
    for i, m in SBD_MASKS.items():
        scipy.io.savemat(cls_dir / f"{i}.mat", {"GTcls": {"Segmentation": m, "Boundaries": np.zeros(1),
                                                          "CategoriesPresent": np.unique(m[m > 0])}})
    (raw / "train_noval.txt").write_text("2008_000001\n2007_000002\n")
    return PascalRaw.under(raw)


def test_prepare_pascal_lists_masks_and_links(tmp_path, monkeypatch):
    import svf.data.pascal as pascal

    monkeypatch.setattr(pascal, "PARALLEL_MIN_IMAGES", 0)  # the tiny set takes the multiprocessing path
    raw = _make_raw(tmp_path)
    summary = prepare_pascal(raw, tmp_path / "out", workers=2, progress=False)
    ds = open_dataset(tmp_path / "out")
    assert ds.name == "pascal" and ds.class_names[14] == "person"
    assert ds.ids("train") == ["2008_000001", "2007_000002", "2007_000001"]  # SBD first, as PFENet's merge
    assert ds.ids("val") == ["2007_000003"]
    assert summary["in_both"] == 1 and summary["mask_sources"] == {"sbd": 1, "voc": 3}
    for i, m in VOC_MASKS.items():  # palette indices, 255 borders kept; VOC wins where both annotate
        assert np.array_equal(read_mask(ds.mask_path(i)), m)
    assert np.array_equal(read_mask(ds.mask_path("2008_000001")), SBD_MASKS["2008_000001"])
    with Image.open(ds.mask_path("2007_000001")) as img:
        assert img.mode == "L"
    src = raw.voc / "JPEGImages" / "2007_000001.jpg"
    assert ds.image_path("2007_000001").samefile(src)  # hard link, not a copy


def test_prepare_pascal_prefer_sbd_symlinks_and_ready_made_aug(tmp_path):
    raw = _make_raw(tmp_path)
    prepare_pascal(raw, tmp_path / "sbd", prefer="sbd", link="symlink", progress=False)
    ds = open_dataset(tmp_path / "sbd")
    assert np.array_equal(read_mask(ds.mask_path("2007_000002")), SBD_MASKS["2007_000002"])
    assert ds.image_path("2007_000003").is_symlink()
    aug = tmp_path / "aug"
    aug.mkdir()
    for i in ["2008_000001", "2007_000002", "2007_000001", "2007_000003"]:
        (aug / f"{i}.png").write_bytes(_png_bytes(np.full((H, W), 9, np.uint8)))
    raw_aug = PascalRaw(raw.voc, raw.sbd, raw.sbd_list, segmentation_class_aug=aug)
    summary = prepare_pascal(raw_aug, tmp_path / "aug_out", link="copy", progress=False)
    assert summary["mask_sources"] == {"aug": 4}
    assert read_mask(open_dataset(tmp_path / "aug_out").mask_path("2007_000003")).max() == 9


def test_prepare_pascal_errors_name_the_file(tmp_path):
    raw = _make_raw(tmp_path)
    (raw.sbd / "cls" / "2008_000001.mat").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000001"):
        prepare_pascal(raw, tmp_path / "out", progress=False)
    bad = raw.voc / "SegmentationClass" / "2007_000001.png"
    bad.write_bytes(_png_bytes(np.full((H, W), 33, np.uint8), _voc_palette()))
    with pytest.raises(ValueError, match=r"2007_000001\.png: palette indices \[33\]"):
        prepare_pascal(PascalRaw(raw.voc, None, None), tmp_path / "out2", progress=False)
    raw.sbd_list.write_text("2007_000003\n")  # a VOC val image in the SBD list would leak val into train
    with pytest.raises(ValueError, match="VOC val images"):
        prepare_pascal(raw, tmp_path / "out3", progress=False)


def test_merge_lists_keeps_first_occurrence():
    assert merge_lists(["b", "a"], ["a", "c", "b"]) == ["b", "a", "c"]


def test_read_sbd_mat_rejects_non_class_values(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"GTcls": {"Segmentation": np.full((2, 2), 25, np.uint8)}})
    with pytest.raises(ValueError, match=r"x\.mat: GTcls\.Segmentation"):
        read_sbd_mat(tmp_path / "x.mat")
    assert read_sbd_mat(_write_mat(tmp_path / "y.mat")).tolist() == [[0, 5]]


def _write_mat(path):
    scipy.io.savemat(path, {"GTcls": {"Segmentation": np.array([[0, 5]], np.uint8)}})
    return path
