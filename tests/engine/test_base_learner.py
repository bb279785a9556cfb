"""BAM stage 1 model selection as BAM's train_base.py: base-class mIoU (background left out, absent classes 0) and
a stop after 75 epochs without a new best."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from svf.engine.tasks.base_learner import base_class_miou, segmentation_counts
from svf.pipeline.recipe import resolve_recipe

from cells import merged_config
import yaml
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_made_up_counts_give_bams_class_miou():
    inter = torch.tensor([50.0, 8.0, 0.0, 0.0])
    union = torch.tensor([60.0, 10.0, 5.0, 0.0])  # class 3 never occurs: BAM counts it 0 (0 / 1e-10)
    assert base_class_miou(inter, union) == pytest.approx(100 * (0.8 + 0 + 0) / 3)
    # background + the classes that occur (the rule before) would have read (50/60 + 0.8 + 0) / 3 = 54.4
    assert base_class_miou(inter, union) < 30


class FixedPrediction(nn.Module):
    def __init__(self, pred):
        super().__init__()
        self.pred = pred

    def forward(self, image):
        return nn.functional.one_hot(self.pred, 3).permute(0, 3, 1, 2).float()


def test_counts_accumulate_over_the_whole_list_and_ignore_255():
    label = torch.tensor([[[0, 1, 1, 255]], [[2, 2, 0, 0]]])
    pred = torch.tensor([[[0, 1, 2, 2]], [[2, 0, 0, 0]]])
    loader = [{"image": torch.zeros(2, 3, 1, 4), "label": label}]
    inter, union = segmentation_counts(FixedPrediction(pred), loader, torch.device("cpu"), 3)
    assert inter.tolist() == [3.0, 1.0, 1.0] and union.tolist() == [4.0, 2.0, 3.0]
    assert base_class_miou(inter, union) == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)


def test_the_base_recipe_stops_after_75_epochs_without_a_new_best():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for dataset in ("pascal", "coco"):
        assert resolve_recipe(config, "bam-base", dataset)["early_stop"] == 75
    assert merged_config()["recipe_overrides"]["early_stop"] is None  # the demo's short schedule never stops early
