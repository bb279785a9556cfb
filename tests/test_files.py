"""Loading files others may hand you: tensors and plain data only; unreadable files are named with their remedy."""
from __future__ import annotations

import os

import pytest
import torch

from svf.engine.tasks.build import load_weights_file
from svf.engine.tasks.evaluate import evaluate_cell
from svf.engine.tasks.train import train_cell
from svf.files import UnreadableFileError, UnsafeFileError, torch_load

from cells import tiny_spec


class Payload:
    """Unpickling this runs a shell command: what weights_only=True must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_with_a_code_payload_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save({"state": {"w": torch.zeros(1)}, "extra": Payload(marker)}, path)
    with pytest.raises(UnsafeFileError, match=r"refusing to load trained cell .*model.pt: it holds pickled objects"):
        torch_load(path, "trained cell", "delete it")
    assert not marker.exists()


def test_plain_checkpoints_load(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"state": {"w": torch.ones(2)}, "epoch": 3, "rng": [1, (2, 3)], "name": "x"}, path)
    assert torch_load(path, "x", "y")["epoch"] == 3


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_unreadable_weights_and_models_name_the_file_and_the_rule(tmp_path, pascal_data):
    weights = tmp_path / "resnet50.pth"
    torch.save({"layer0.0.weight": torch.zeros(1)}, weights)
    _truncate(weights)
    with pytest.raises(UnreadableFileError, match=r"backbone weights file .*resnet50.pth .*rule imagenet_weights"):
        load_weights_file(torch.nn.Module(), weights)
    spec = tiny_spec()
    out = tmp_path / "cell"
    train_cell(spec, pascal_data["root"], pascal_data["splits"], None, str(out), str(tmp_path / "ck"), threads=1)
    _truncate(out / "model.pt")
    with pytest.raises(UnreadableFileError, match=r"trained cell .*model.pt .*re-trains the cell \(rule train\)"):
        evaluate_cell(spec, pascal_data["root"], pascal_data["splits"], None, str(out / "model.pt"),
                      str(out / "metrics.json"), threads=1)
    assert not (out / "metrics.json").exists()


def test_a_truncated_checkpoint_is_moved_aside_and_the_cell_restarts(tmp_path, pascal_data, capsys):
    spec = tiny_spec()
    ckpt = tmp_path / "ck"
    first = train_cell(spec, pascal_data["root"], pascal_data["splits"], None, str(tmp_path / "a"), str(ckpt),
                       threads=1)
    _truncate(ckpt / "last.pt")
    again = train_cell(spec, pascal_data["root"], pascal_data["splits"], None, str(tmp_path / "b"), str(ckpt),
                       threads=1)
    err = capsys.readouterr().err
    aside = [p for p in ckpt.iterdir() if p.name.startswith("last.pt.unreadable-")]
    assert len(aside) == 1 and str(aside[0]) in err and "cannot read training checkpoint" in err
    assert again["epochs_run"] == first["epochs_run"] and again["best_val_miou"] == first["best_val_miou"]
    assert torch_load(ckpt / "last.pt", "checkpoint", "")["train"]["epoch"] == first["epochs_run"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mode):
    from svf.files import torch_save, write_json

    saved = os.umask(umask)
    try:
        written = [write_json(tmp_path / "metrics.json", {"miou": 1.0}), torch_save(tmp_path / "model.pt", {})]
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(saved)
    assert (plain.stat().st_mode & 0o777) == mode  # what open() gives, for reference
    assert [oct(p.stat().st_mode & 0o777) for p in written] == [oct(mode)] * 2
