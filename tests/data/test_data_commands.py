"""The data commands end to end: svf synth -> prepare -> splits, download --list, exit codes."""
from __future__ import annotations

import json
import shutil

from svf.cli import main
from svf.data.datasets import read_id_list, write_dataset_json, write_id_list
from svf.data.splits import DEFAULT_REFERENCE_DIR


def test_synth_prepare_splits_commands(tmp_path, capsys):
    raw, prep, splits = tmp_path / "raw", tmp_path / "prep", tmp_path / "splits"
    assert main(["synth", "--dataset", "pascal", "--out", str(raw), "--train-per-class", "3",
                 "--val-per-class", "2", "--seed", "5"]) == 0
    assert main(["prepare", "pascal", "--raw", str(raw), "--out", str(prep), "--quiet"]) == 0
    assert json.loads((prep / "dataset.json").read_text())["source"] == "synthetic"
    assert main(["splits", "--dataset-root", str(prep), "--out", str(splits), "--quiet", "--folds", "0", "2",
                 "--min-pool-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "dagger/train/fold0" in out and "reference check skipped" in out
    assert (splits / "original/val/fold2_support_pools.json").is_file()
    assert not (splits / "original/val/fold1_images.txt").exists()
    assert main(["splits", "--dataset-root", str(prep), "--out", str(tmp_path / "s2"), "--quiet",
                 "--min-pool-size", "1000"]) == 4
    assert "class" in capsys.readouterr().err


def test_splits_missing_mask_exits_6_naming_the_file(tmp_path, capsys):
    root = tmp_path / "ds"
    write_dataset_json(root, "pascal")
    write_id_list(root / "lists/train.txt", ["2007_000032"])
    write_id_list(root / "lists/val.txt", ["2007_000033"])
    assert main(["splits", "--dataset-root", str(root), "--out", str(tmp_path / "s")]) == 6
    err = capsys.readouterr().err
    assert "2007_000032.png" in err and "Traceback" not in err


def test_splits_warns_and_fails_strictly_on_reference_mismatch(tmp_path, capsys, monkeypatch):
    import svf.data.splits as splits_mod

    ref = tmp_path / "ref"
    shutil.copytree(DEFAULT_REFERENCE_DIR, ref)
    root = tmp_path / "ds"
    write_dataset_json(root, "pascal")
    write_id_list(root / "lists/train.txt", read_id_list(ref / "pascal/voc_sbd_merge_noduplicate_images.txt"))
    write_id_list(root / "lists/val.txt", read_id_list(ref / "pascal/val_images.txt"))

    def fake_scan(dataset, ids, workers=1, progress=True):  # masks as the reference pools imply
        classes = {i: {} for i in ids}
        for setting_split in ("train", "val"):
            for k in range(4):
                for c, members in splits_mod.load_fold(ref / "pascal", "original", setting_split, k).pools.items():
                    for i in members:
                        classes[i][c] = 4096
        for k in range(4):  # give dagger-dropped images a tiny novel object
            orig = set(splits_mod.load_fold(ref / "pascal", "original", "train", k).images)
            for i in orig - set(splits_mod.load_fold(ref / "pascal", "dagger", "train", k).images):
                classes[i].setdefault(5 * k + 1, 1)
        return classes

    monkeypatch.setattr(splits_mod, "scan_masks", fake_scan)
    args = ["splits", "--dataset-root", str(root), "--out", str(tmp_path / "s"), "--reference", str(ref), "--quiet"]
    assert main(args) == 0
    assert "identical to the authors' lists (32 files)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "s/splits_summary.json").read_text())
    assert summary["files"]["dagger/train/fold0"]["images"] == 4208
    assert summary["files"]["original/train/fold3"]["images"] == 5108
    ids = read_id_list(ref / "pascal/dagger/train/fold1_images.txt")
    write_id_list(ref / "pascal/dagger/train/fold1_images.txt", ids + ["2099_000001"])
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "dagger/train/fold1_images.txt: 3726 images vs reference 3727" in err
    assert main(args + ["--strict-reference"]) == 3


def test_synth_totals_round_up_and_warn_below_six(tmp_path, capsys):
    assert main(["synth", "pascal", "--out", str(tmp_path / "c"), "--train", "21", "--val", "20", "--size", "128"]) == 0
    captured = capsys.readouterr()
    summary, result = captured.out.splitlines()
    info = json.loads(summary)
    assert result == f"svf synth: pascal: {sum(info['counts'].values())} synthetic images -> {tmp_path / 'c'}"
    assert info["counts"]["voc_val"] == 20  # 20 val images: one per class
    assert info["guaranteed_pool_size"] == {"train": 1, "val": 1}  # 21 -> 2 per class, one of them mixed
    assert "only guaranteed 1 images" in captured.err
    assert main(["synth", "pascal", "--out", str(tmp_path / "p"), "--size", "80"]) == 2  # a usage error
    assert "too small" in capsys.readouterr().err


def test_download_copy_to_from_mirror(tmp_path, monkeypatch):
    import hashlib

    import svf.data.download as dl

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.pth").write_bytes(b"weights")
    monkeypatch.setitem(dl.REGISTRY, "w", dl.Artifact("w", "w.pth", ("http://127.0.0.1:9/w.pth",),
                                                     md5=hashlib.md5(b"weights").hexdigest()))
    assert main(["download", "w", "--out-dir", str(tmp_path / "dl"), "--mirror", str(mirror),
                 "--copy-to", str(tmp_path / "weights/resnet50.pth"), "--quiet"]) == 0
    assert (tmp_path / "weights/resnet50.pth").read_bytes() == b"weights"


def test_download_list_and_unknown_item(capsys, tmp_path):
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    assert "6cd6e144f989b92b3379bac3b3de84fd" in out and "resnet50_v2.pth" in out
    assert main(["download", "imagenet", "--dest", str(tmp_path)]) == 2
    assert "unknown download item 'imagenet'" in capsys.readouterr().err
