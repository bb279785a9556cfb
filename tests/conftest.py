"""Shared fixtures: tiny synthetic datasets prepared by the real `svf synth` / `svf prepare` / `svf splits` code."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from svf.cli import main as svf_main

# The helpers beside this file (cells.py, fakes.py) are imported by tests in every sub-directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run tiny tensors: on a shared 2-core machine, OpenMP threads mostly wait for each other (a tiny BAM
    forward took 12.8 s instead of 0.06 s under load), so every test runs torch with one thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _prepare(tmp: Path, dataset: str) -> dict:
    raw, data, splits = tmp / "raw" / dataset, tmp / "data" / dataset, tmp / "splits" / dataset
    # the generator's defaults (8 train / 6 val images per class, 128 px) guarantee pools for 5-shot episodes
    assert svf_main(["synth", dataset, "--out", str(raw), "--seed", "0"]) == 0
    assert svf_main(["prepare", dataset, "--raw", str(raw), "--out", str(data), "--quiet"]) == 0
    assert svf_main(["splits", "--dataset-root", str(data), "--out", str(splits), "--quiet"]) == 0
    return {"root": str(data), "splits": str(splits)}


@pytest.fixture(scope="session")
def pascal_data(tmp_path_factory) -> dict:
    """A prepared synthetic PASCAL-5i with its fold splits."""
    return _prepare(tmp_path_factory.mktemp("pascal"), "pascal")


@pytest.fixture(scope="session")
def coco_data(tmp_path_factory) -> dict:
    return _prepare(tmp_path_factory.mktemp("coco"), "coco")
