"""The novel-class probe (svf/engine/tasks/probe.py) on constructed cases whose answer is known."""
from __future__ import annotations

import json

import pytest
import torch

from cells import tiny_spec
from svf.engine.tasks.build import build_cell_model, trained_state
from svf.engine.tasks.probe import IGNORED, probe_cell, probe_miou, pixel_labels
from svf.files import torch_save


def test_a_feature_pixel_takes_the_class_covering_most_of_it():
    label = torch.zeros(4, 4, dtype=torch.long)
    label[:2, :2] = 3          # the top-left feature pixel: all class 3
    label[:2, 2:] = 255        # top-right: the border
    label[2:, :2] = 9          # bottom-left: a class that is not novel
    label[2, 2] = 3            # bottom-right: 1/4 class 3, 3/4 background
    got = pixel_labels(label, classes=[3, 4], size=(2, 2))
    assert got.tolist() == [[3, IGNORED], [IGNORED, 0]]


def test_the_probe_scores_separable_features_high_and_uninformative_ones_low():
    generator = torch.Generator().manual_seed(0)
    classes = [1, 2, 3]
    labels = torch.tensor([0, 1, 2, 3] * 50)
    onehot = torch.nn.functional.one_hot(labels, 4).double()
    informative = torch.cat([onehot * 3, torch.randn(200, 6, generator=generator, dtype=torch.float64)], 1)
    noise = torch.randn(200, 10, generator=generator, dtype=torch.float64)
    assert probe_miou(informative[:100], labels[:100], informative[100:], labels[100:], classes) == 100.0
    assert probe_miou(noise[:100], labels[:100], noise[100:], labels[100:], classes) < 40.0


@pytest.fixture(scope="module")
def cell_files(pascal_data, tmp_path_factory):
    """Two trained-looking cells on the tiny data: frozen (nothing trained) and full fine-tuning whose layer1 has
    been zeroed (its features carry nothing about the image any more)."""
    tmp = tmp_path_factory.mktemp("probe")
    out = {}
    for policy in ("frozen", "full"):
        spec = tiny_spec(policy=policy)
        model, parsed = build_cell_model(spec, None)
        state = trained_state(model, parsed)
        if policy == "full":
            state = {k: (torch.zeros_like(v) if k.startswith("layer1.") and k.endswith("weight") else v)
                     for k, v in state.items()}
        torch_save(tmp / f"{policy}.pt", {"cell_id": spec.cell_id, "state": state, "epoch": 1})
        out[policy] = (spec, tmp / f"{policy}.pt")
    return out


def test_frozen_changes_nothing_and_a_destroyed_backbone_loses_the_novel_classes(pascal_data, cell_files, tmp_path):
    results = {}
    for policy, (spec, model_file) in cell_files.items():
        results[policy] = probe_cell(spec, pascal_data["root"], pascal_data["splits"], None, str(model_file),
                                     str(tmp_path / f"{policy}.json"), threads=1)
    frozen, full = results["frozen"], results["full"]
    assert frozen["change"] == {"mid": 0.0, "layer4": 0.0}  # nothing trained: the same features, the same probe
    assert frozen["before"]["mid"] > 30.0                    # even a random backbone's features locate the objects
    assert full["after"]["mid"] < full["before"]["mid"] - 20.0
    written = json.loads((tmp_path / "full.json").read_text())
    assert written["cell_id"] == cell_files["full"][0].cell_id and written["after"]["test_pixels"] > 100
