"""Shared fixtures: tiny synthetic datasets prepared by the real `svf synth` / `svf prepare` / `svf splits` code, and
cell specs built from the real config files (paper config + demo overlay) with even smaller schedules."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from svf.cli import main as svf_main
from svf.engine.spec import Cell, cell_spec

ROOT = Path(__file__).resolve().parents[1]


def merged_config(*overlays: dict) -> dict:
    """config/config.yaml + config/demo.yaml + overlays (nested dicts merged like Snakemake's --configfile)."""
    def merge(a: dict, b: dict) -> dict:
        for key, value in b.items():
            if isinstance(value, dict) and isinstance(a.get(key), dict):
                merge(a[key], value)
            else:
                a[key] = copy.deepcopy(value)
        return a

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    merge(config, yaml.safe_load((ROOT / "config" / "demo.yaml").read_text()))
    for overlay in overlays:
        merge(config, overlay)
    return config


TINY = {"recipe_overrides": {"epochs": 2, "max_episodes_per_epoch": 4, "batch_size": 2, "val_episodes": 4},
        "evaluation": {"episodes": 6}}


def tiny_spec(dataset="pascal", backbone="resnet50", method="baseline", setting="dagger", policy="svf",
              recipe="svf-code", shot=1, fold=0, **overlay) -> dict:
    config = merged_config(TINY, overlay)
    return cell_spec(config, Cell(dataset, backbone, method, setting, policy, recipe, shot, fold))


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
