"""A learning test, not a smoke test: one cell trained briefly on the synthetic data must segment the novel class
of its test episodes far better than the trivial predictors (all foreground scores about 15 mIoU, all background 0).

Deterministic on the CPU (one thread, fixed seeds), so it cannot flake; a training bug (wrong labels, a broken
prior or prototype, a policy that trains nothing, the optimizer on the wrong tensors) keeps the cell near the
trivial scores and fails it.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from svf.engine.tasks.evaluate import evaluate_cell
from svf.engine.tasks.loaders import eval_loader, fold_novel_classes
from svf.engine.tasks.pretrain import pretrain_backbone
from svf.pipeline.spec_types import PretrainSpec
from svf.pipeline.specs import pretrain_spec
from svf.engine.tasks.train import score_episodes, train_cell

from cells import merged_config, tiny_spec

EPISODES = 200
SCHEDULE = {"recipe_overrides": {"epochs": 16, "max_episodes_per_epoch": 80, "batch_size": 4, "val_episodes": 20},
            "evaluation": {"episodes": EPISODES}}


class AllForeground(nn.Module):
    """Predicts the episode's class at every pixel."""

    def forward(self, query, supports, support_labels, class_id=None):
        b, _, h, w = query.shape
        return {"logits": torch.stack([torch.zeros(b, h, w), torch.ones(b, h, w)], 1)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The demo's stand-in pretraining, shortened to 400 steps."""
    config = merged_config({"weights": {"pretrain": {"steps": 400}}})
    out = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    pretrain_backbone(PretrainSpec.from_json(pretrain_spec(config, "resnet50")), str(out), threads=1, device="cpu")
    return str(out)


@pytest.mark.slow
def test_a_short_svf_run_beats_the_trivial_predictors(pascal_data, weights, tmp_path):
    spec = tiny_spec(policy="svf", **SCHEDULE)
    out = tmp_path / "cell"
    train_cell(spec, pascal_data["root"], pascal_data["splits"], weights, str(out), str(tmp_path / "ckpt"),
               threads=1, device="cpu")
    metrics = evaluate_cell(spec, pascal_data["root"], pascal_data["splits"], weights, str(out / "model.pt"),
                            str(out / "metrics.json"), threads=1, device="cpu")
    loader = eval_loader(spec, pascal_data["root"], pascal_data["splits"], n_episodes=EPISODES, seed=321)
    trivial = score_episodes(AllForeground(), loader, torch.device("cpu"), fold_novel_classes(spec),
                             spec.evaluation.absent_class).miou() * 100
    print(f"learning test: {metrics['miou']:.1f} mIoU against {trivial:.1f} for all foreground")
    assert 10 < trivial < 20  # the all-foreground level of these episodes
    assert metrics["episodes"] == EPISODES
    assert metrics["miou"] > trivial + 12, (metrics["miou"], trivial)
