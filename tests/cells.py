"""Test helpers: configs merged like Snakemake does and tiny cell specs built from the real config files."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from svf.pipeline.cells import Cell
from svf.pipeline.spec_types import CellSpec
from svf.pipeline.specs import build_cell_spec

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
              recipe="svf-code", shot=1, fold=0, **overlay) -> CellSpec:
    config = merged_config(TINY, overlay)
    return build_cell_spec(config, Cell(dataset, backbone, method, setting, policy, recipe, shot, fold))
