"""Validation of frozen-backbone cells from cached backbone inputs: the same scores; BAM's base learner reading the
query's features when both backbones hold the same tensors: the same outputs."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from svf.engine.tasks.build import build_cell_model
from svf.engine.tasks.feature_cache import ValidationCache, backbone_is_frozen
from svf.engine.tasks.loaders import eval_loader, fold_novel_classes
from svf.engine.tasks.train import score_episodes
from svf.models import build_base_learner

from cells import tiny_spec

CPU = torch.device("cpu")


def _scores(score):
    return score.miou(), score.fb_iou(), score.class_iou()


@pytest.mark.parametrize("method", ["baseline", "pfenet"])
def test_cached_validation_gives_the_scores_of_the_full_forward(method, pascal_data):
    spec = tiny_spec(method=method, policy="frozen")
    model, policy = build_cell_model(spec, None)
    assert backbone_is_frozen(model, policy)
    loader = eval_loader(spec, pascal_data["root"], pascal_data["splits"], n_episodes=20, seed=321, batch_size=4)
    classes = fold_novel_classes(spec)
    full = _scores(score_episodes(model, loader, CPU, classes, "skip"))
    cache = ValidationCache()
    first, second = (_scores(cache.score(model, loader, CPU, classes, "skip")) for _ in range(2))
    assert first == full and second == full and cache.used > 0
    # a head that moved: the cached pass follows it exactly like a full forward
    with torch.no_grad():
        model.init_merge[0][0].weight.mul_(1.5) if method == "pfenet" else model.init_merge[0].weight.mul_(1.5)
    assert _scores(cache.score(model, loader, CPU, classes, "skip")) == _scores(
        score_episodes(model, loader, CPU, classes, "skip"))


def test_an_exhausted_budget_recomputes_the_rest(pascal_data):
    spec = tiny_spec(policy="frozen")
    model, _ = build_cell_model(spec, None)
    loader = eval_loader(spec, pascal_data["root"], pascal_data["splits"], n_episodes=12, seed=321, batch_size=4)
    classes = fold_novel_classes(spec)
    full = _scores(score_episodes(model, loader, CPU, classes, "skip"))
    tiny = ValidationCache(budget_gb=1e-9)  # nothing fits
    assert _scores(tiny.score(model, loader, CPU, classes, "skip")) == full
    assert _scores(tiny.score(model, loader, CPU, classes, "skip")) == full and tiny.used == 0


def test_past_the_budget_only_the_uncached_episodes_are_loaded(pascal_data, monkeypatch):
    spec = tiny_spec(policy="frozen")
    model, _ = build_cell_model(spec, None)
    loader = eval_loader(spec, pascal_data["root"], pascal_data["splits"], n_episodes=12, seed=321, batch_size=4)
    classes = fold_novel_classes(spec)
    full = _scores(score_episodes(model, loader, CPU, classes, "skip"))
    one_batch = ValidationCache()
    one_batch.score(model, loader, CPU, classes, "skip")
    per_batch = one_batch.used / 3
    partial = ValidationCache(budget_gb=1.5 * per_batch / 2**30)  # room for one batch of the three
    loaded = []
    original = type(loader.dataset).__getitem__
    monkeypatch.setattr(type(loader.dataset), "__getitem__", lambda self, i: loaded.append(i) or original(self, i))
    assert _scores(partial.score(model, loader, CPU, classes, "skip")) == full
    assert len(partial.entries) == 1 and sorted(loaded) == list(range(12))
    loaded.clear()
    for _ in range(2):
        assert _scores(partial.score(model, loader, CPU, classes, "skip")) == full
    assert sorted(loaded) == sorted(list(range(4, 12)) * 2)  # the cached first batch is never read again


def test_only_a_frozen_backbone_with_frozen_batchnorm_is_cached():
    for policy, frozen in (("frozen", True), ("svf", False), ("bn", False), ("frozen-bntrain", False)):
        model, parsed = build_cell_model(tiny_spec(policy=policy), None)
        assert backbone_is_frozen(model, parsed) == frozen, policy


def test_frozen_bam_reads_the_query_features_for_its_base_learner_exactly(tmp_path):
    def small_base(spec):
        return replace(spec, model=replace(spec.model, options={**spec.model.options, "base_cls_dim": 8}))

    spec = small_base(tiny_spec(method="bam", policy="frozen"))
    torch.manual_seed(1)
    base = build_base_learner(**spec.model.base_learner().kwargs())
    path = tmp_path / "base.pt"
    torch.save(base.state_dict(), path)
    model, _ = build_cell_model(spec, None, path)
    model.eval()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(2, 3, 33, 33, generator=g), torch.randn(2, 1, 3, 33, 33, generator=g),
             (torch.rand(2, 1, 33, 33, generator=g) > 0.5).long())
    with torch.no_grad():
        separate = model(*batch)
        assert model.share_frozen_backbone() and model.reuse_query_features
        shared = model(*batch)
    for key in ("logits", "base_logits", "meta_logits"):
        assert torch.equal(separate[key], shared[key]), key
    svf, _ = build_cell_model(small_base(tiny_spec(method="bam", policy="svf")), None, path)
    assert not svf.share_frozen_backbone()  # S trains: the stacks differ as soon as it moves
