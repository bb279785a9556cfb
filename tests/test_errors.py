"""What a user meets on a mistake: one paragraph naming the file or key and what to do, an exit code per kind, no
traceback unless --debug (or in the log of --log); and a result line on success."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from svf.cli import main
from svf.errors import EXIT_CODES, DataError, clean_message, describe

from cells import tiny_spec

ROOT = Path(__file__).resolve().parents[1]


def _svf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "svf", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def _train(capsys, root, splits, tmp_path, *extra):
    code = main(["train", "--spec", json.dumps(tiny_spec().to_json()), "--dataset-root", str(root), "--splits", str(splits),
                 "--out-dir", str(tmp_path / "cell"), "--checkpoint-dir", str(tmp_path / "ck"), "--threads", "1",
                 *extra])
    return code, capsys.readouterr().err


@pytest.fixture()
def data_copy(tmp_path, pascal_data):
    """A private copy of the prepared synthetic PASCAL (its files are then damaged by the test)."""
    root = tmp_path / "data"
    shutil.copytree(pascal_data["root"], root)
    return root, pascal_data["splits"]


def test_exit_codes_are_distinct_and_documented():
    codes = [e.code for e in EXIT_CODES]
    assert len(codes) == len(set(codes))
    assert "exit codes:" in _svf("--help").stdout


def test_a_corrupt_jpeg_is_one_paragraph_naming_the_file(tmp_path, capsys, data_copy):
    root, splits = data_copy
    for jpeg in (root / "JPEGImages").glob("*.jpg"):
        jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    code, err = _train(capsys, root, splits, tmp_path)
    assert code == DataError.exit_code
    assert err.startswith("svf train: input data error: cannot read image ")
    assert str(root / "JPEGImages") in err and "Traceback" not in err and len(err.splitlines()) == 2
    code, err = _train(capsys, root, splits, tmp_path, "--debug")
    assert code == DataError.exit_code and "Traceback (most recent call last)" in err


def test_a_mask_of_the_wrong_size_names_image_and_mask(tmp_path, capsys, data_copy):
    root, splits = data_copy
    for mask in (root / "SegmentationClassAug").glob("*.png"):
        Image.fromarray(np.zeros((10, 12), np.uint8)).save(mask)
    code, err = _train(capsys, root, splits, tmp_path)
    assert code == DataError.exit_code and "Traceback" not in err
    assert "but mask " in err and "is 12x10: a mask must have its image's size" in err
    assert str(root / "JPEGImages") in err and str(root / "SegmentationClassAug") in err


def test_a_truncated_model_names_the_file_and_the_rule(tmp_path, pascal_data):
    model = tmp_path / "model.pt"
    torch.save({"state": {"w": torch.zeros(1000)}}, model)
    model.write_bytes(model.read_bytes()[:300])
    result = _svf("evaluate", "--spec", json.dumps(tiny_spec().to_json()), "--dataset-root", pascal_data["root"],
                  "--splits", pascal_data["splits"], "--model", model, "--out", tmp_path / "metrics.json",
                  "--threads", "1")
    assert result.returncode == 7, result.stderr
    assert result.stderr.startswith(f"svf evaluate: model file error: cannot read trained cell {model}")
    assert "rule train" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_device_is_a_usage_error_listing_the_devices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--spec", "{}", "--dataset-root", "x", "--splits", "y", "--model", "m", "--out", "o",
              "--device", "gpu"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and "usage:" not in err
    assert "argument --device: 'gpu' is not a device: use auto" in err and "cuda:N" in err
    from svf.engine.loop.device import select_device

    with pytest.raises(Exception) as raised:  # the library call: the same words, not torch's list
        select_device("gpu")
    assert describe(raised.value).exit_code == 8 and "'gpu' is not a device" in str(raised.value)


def test_log_sends_everything_to_the_file_and_keeps_the_paragraph_on_the_terminal(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a torch file")
    log = tmp_path / "logs" / "evaluate.log"
    result = _svf("--log", log, "evaluate", "--spec", json.dumps(tiny_spec().to_json()), "--dataset-root", "x", "--splits",
                  "y", "--model", model, "--out", tmp_path / "m.json")
    assert result.returncode == 7 and result.stdout == ""
    assert result.stderr.startswith("svf evaluate: model file error:") and "Traceback" not in result.stderr
    assert "The traceback is in the log." in result.stderr
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "svf evaluate: model file error:" in text


def test_a_logged_command_prints_its_result_line_and_writes_it_to_the_log(tmp_path):
    log = tmp_path / "synth.log"
    result = _svf("--log", log, "synth", "pascal", "--out", tmp_path / "raw", "--train-per-class", "1",
                  "--val-per-class", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"svf synth: pascal: 44 synthetic images -> {tmp_path / 'raw'}"]
    assert result.stderr.strip() in log.read_text() and '"counts"' in log.read_text()


def test_an_error_from_a_loader_worker_loses_the_worker_traceback():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise DataError("cannot read image /data/x.jpg: image file is truncated")

    loader = torch.utils.data.DataLoader(Broken(), num_workers=1)
    with pytest.raises(DataError) as raised:
        next(iter(loader))
    assert "Original Traceback" in str(raised.value)  # what torch re-raises
    assert clean_message(raised.value) == "cannot read image /data/x.jpg: image file is truncated"


def test_estimate_rejects_an_unknown_config_key_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: {biuld: [table4]}\n")
    result = _svf("estimate", "--configfile", ROOT / "config" / "config.yaml", bad, "--out", tmp_path)
    assert result.returncode == 5 and "Traceback" not in result.stderr
    assert "tables: unknown key 'biuld'; did you mean 'build'?" in result.stderr and str(bad) in result.stderr


def test_coco_synth_reports_its_images(tmp_path, capsys):
    assert main(["synth", "coco", "--out", str(tmp_path / "coco"), "--train-per-class", "1", "--val-per-class",
                 "1"]) == 0
    counts = json.loads((tmp_path / "coco" / "synth.json").read_text())["counts"]
    images = counts["train2014"]["images"] + counts["val2014"]["images"]
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"svf synth: coco: {images} synthetic images -> {tmp_path / 'coco'}"
