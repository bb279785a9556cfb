"""The authors' 4 GPUs x 2 images arithmetic in one process, micro-batches, and bf16 against fp32 (CPU)."""
from __future__ import annotations

import copy

import pytest
import torch

from svf.engine.loop.batching import Grouping, check_grouping, grouped_loss, micro_batches, slice_batch
from svf.engine.tasks.build import build_cell_model
from svf.engine.loop.precision import Precision
from svf.engine.tasks.train import forward
from svf.pipeline.recipe import Recipe

from cells import tiny_spec

SIZE = 33


def _episodes(n=8, seed=0):
    """A batch of n random episodes whose query labels have very different numbers of valid pixels."""
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(n, SIZE, SIZE, generator=g) > 0.6).long()
    for i in range(n):
        label[i, : 3 * i] = 255  # image i: 3i rows ignored
    supports_label = (torch.rand(n, 1, SIZE, SIZE, generator=g) > 0.5).long()
    return {"query": torch.randn(n, 3, SIZE, SIZE, generator=g), "supports": torch.randn(n, 1, 3, SIZE, SIZE, generator=g),
            "support_labels": supports_label, "query_label": label, "class_id": torch.arange(1, n + 1) % 5 + 1}


def _model():
    torch.manual_seed(0)
    model, _ = build_cell_model(tiny_spec(policy="svf"), None)
    return model.eval()  # dropout off, so every path sees the same network; gradients still flow


def _loss_fn(model):
    return lambda out, part: model.loss(out, part)[0]


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _replicas(model, batch, gpus=4):
    """Explicit simulation of DistributedDataParallel: each replica's loss over its own images, gradients averaged."""
    per = batch["query"].shape[0] // gpus
    grads = []
    for r in range(gpus):
        replica = copy.deepcopy(model)
        part = slice_batch(batch, r * per, (r + 1) * per)
        replica.loss(forward(replica, part), part)[0].backward()
        grads.append(_grads(replica))
    return {k: torch.stack([g[k] for g in grads]).mean(0) for k in grads[0]}


def _ours(model, batch, loss_groups, micro_batch):
    model = copy.deepcopy(model)
    group, micro = check_grouping(batch["query"].shape[0], loss_groups, micro_batch)
    for chunk in micro_batches(batch, micro):
        grouped_loss(_loss_fn(model), forward(model, chunk), chunk, group, loss_groups).backward()
    return _grads(model)


@pytest.mark.parametrize("micro_batch", [8, 4, 2, None])
def test_grouped_loss_and_micro_batches_equal_four_replicas_of_two(micro_batch):
    model, batch = _model(), _episodes()
    reference = _replicas(model, batch)
    ours = _ours(model, batch, loss_groups=4, micro_batch=micro_batch)
    assert reference.keys() == ours.keys() and len(ours) > 10
    for k in reference:
        torch.testing.assert_close(ours[k], reference[k], rtol=1e-4, atol=1e-7, msg=k)


def test_one_mean_over_all_pixels_is_a_different_gradient():
    model, batch = _model(), _episodes()
    reference, single = _replicas(model, batch), _ours(model, batch, loss_groups=1, micro_batch=None)
    assert max(float((single[k] - reference[k]).abs().max() / (reference[k].abs().max() + 1e-12))
               for k in reference) > 1e-2


def _recipe(**values) -> Recipe:
    """A recipe with only its required values (and ``values``): the others at their defaults."""
    required = dict(name="r", base_lr=0.01, schedule="auto", poly_power=0.9, poly_scale=1, backbone_lr_mult=0.1,
                    momentum=0.9, weight_decay=1e-4, batch_size=8, select="best", val_episodes=1, protocol="svf-code",
                    epochs=1, crop=33, scale=(0.9, 1.1), val_size=33)
    return Recipe(**{**required, **values})


def test_grouping_errors_name_the_setting():
    assert check_grouping(8, 4, None) == (2, 2) and check_grouping(8, 1, None) == (8, 8)
    assert check_grouping(12, 4, 6) == (3, 6)
    with pytest.raises(ValueError, match="loss_groups=3 must divide batch_size=8"):
        check_grouping(8, 3, None)
    with pytest.raises(ValueError, match="micro_batch=3 must be a multiple of the group size 2"):
        check_grouping(8, 4, 3)
    # a recipe's grouping: loss_groups defaults to 1 (one mean), micro_batch to one group
    assert Grouping.of(_recipe(batch_size=8)) == Grouping(8, 8, 1)
    assert Grouping.of(_recipe(batch_size=12, loss_groups=4, micro_batch=6)) == Grouping(3, 6, 4)
    with pytest.raises(ValueError, match="micro_batch=3"):
        Grouping.of(_recipe(batch_size=8, loss_groups=4, micro_batch=3))


def test_bf16_autocast_agrees_with_fp32_within_the_stated_tolerance():
    # bf16 keeps 8 bits of mantissa (2-3 significant digits). Stated tolerance: logits within 10% of their spread
    # at any pixel and 2% on average, the loss within 1% (measured on this model: 2.1%, 0.4%, 0.01%).
    model, batch = _model(), _episodes(n=4)
    with torch.no_grad():
        out32 = forward(model, batch)
        loss32 = model.loss(out32, batch)[0]
        with Precision("bf16").autocast(torch.device("cpu")):
            out16 = forward(model, batch)
            loss16 = model.loss(out16, batch)[0]
    assert out16["logits"].dtype == torch.bfloat16
    spread = float(out32["logits"].std())
    diff = (out16["logits"].float() - out32["logits"]).abs()
    assert float(diff.max()) < 0.10 * spread and float(diff.mean()) < 0.02 * spread
    assert abs(float(loss16) - float(loss32)) < 0.01 * float(loss32)


def test_precision_settings():
    assert Precision.of(_recipe()).name == "tf32" and Precision.of(_recipe(precision="fp16")).name == "fp16"
    assert Precision.of(_recipe(precision="bf16", channels_last=True)) == Precision("bf16", True)
    try:
        Precision("fp32").configure()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        Precision("tf32").configure()
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        Precision("tf32").configure()
    last = Precision("tf32", channels_last=True)
    batch = last.prepare_batch({"query": torch.zeros(2, 3, 8, 8), "class_id": torch.ones(2)})
    assert batch["query"].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="precision must be one of"):
        Precision("int8")
