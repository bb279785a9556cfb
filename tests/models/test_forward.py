"""Every method x backbone x shot builds small, runs forward on a non-square input, and its loss backpropagates."""
import pytest
import torch

from svf.models import MODELS, build_model
from svf.models.common import STAGES


BASE = list(range(6, 21))  # PASCAL fold-0 base classes


def tiny(method, backbone, shot, **kw):
    depths = (1, 1, 1, 1) if backbone == "resnet50" else None
    torch.manual_seed(0)
    return build_model(method, backbone=backbone, shot=shot, width=1 / 32, depths=depths, reduce_dim=4,
                       base_classes=BASE, **kw)


def episode(shot, h=33, w=45, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sl = (torch.rand(b, shot, h, w, generator=g) > 0.5).long()
    sl[:, :, 0] = 255
    ql = (torch.rand(b, h, w, generator=g) > 0.5).long()
    full = torch.where(ql == 1, torch.tensor(1), torch.tensor(7))  # novel class 1 (raw), base class 7
    return {"query": torch.randn(b, 3, h, w, generator=g), "supports": torch.randn(b, shot, 3, h, w, generator=g),
            "support_labels": sl, "query_label": ql, "query_label_full": full, "class_id": torch.tensor([6, 20])[:b]}


def run(model, batch):
    return model(batch["query"], batch["supports"], batch["support_labels"], class_id=batch["class_id"])


@pytest.mark.parametrize("shot", [1, 5])
@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
@pytest.mark.parametrize("method", sorted(MODELS))
def test_forward_loss_backward(method, backbone, shot):
    model = tiny(method, backbone, shot).train()
    batch = episode(shot)
    out = run(model, batch)
    assert out["logits"].shape == (2, 2, 33, 45)
    total, parts = model.loss(out, batch)
    assert torch.isfinite(total) and set(parts) >= {"main"}
    total.backward()
    head = model.head_modules()
    head_ids = {id(p) for m in head for p in m.parameters()}
    backbone_ids = {id(p) for s in STAGES for p in getattr(model, s).parameters()}
    assert head and not head_ids & backbone_ids
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for m in head for p in m.parameters())
    # randomly initialised backbone without a policy: gradients reach layer2..4 (through mid features and prior)
    assert next(model.layer4.parameters()).grad is not None


@pytest.mark.parametrize("size", [(64, 64), (24, 80)])
def test_eval_any_input_size(size):
    model = tiny("pfenet", "resnet50", 1).eval()
    batch = episode(1, *size, b=1)
    with torch.no_grad():
        assert run(model, batch)["logits"].shape == (1, 2, *size)


def test_baseline_down_query_frozen_by_default():
    model = tiny("baseline", "resnet50", 1).train()
    assert not any(p.requires_grad for p in model.down_query.parameters())
    assert model.down_query not in model.head_modules()
    batch = episode(1)
    model.loss(run(model, batch), batch)[0].backward()
    assert model.down_query[0].weight.grad is None and model.down_supp[0].weight.grad is not None
    opt = tiny("baseline", "resnet50", 1, optimize_down_query=True).train()
    assert opt.down_query in opt.head_modules()
    opt.loss(run(opt, batch), batch)[0].backward()
    assert opt.down_query[0].weight.grad is not None


def _same_weights(src, dst):
    dst.load_state_dict(src.state_dict(), strict=False)
    return dst


@pytest.mark.parametrize("method,kw,equal", [("baseline", {"kshot_reduce": "mean"}, True),
                                             ("baseline", {"kshot_reduce": "sum"}, False),
                                             ("pfenet", {}, True)])
def test_kshot_reduction_with_identical_shots(method, kw, equal):
    # K copies of one support: averaging (PFENet, baseline "mean") reproduces the 1-shot output, summing does not
    one = tiny(method, "resnet50", 1, **kw).eval()
    three = _same_weights(one, tiny(method, "resnet50", 3, **kw)).eval()
    b = episode(1, b=1)
    with torch.no_grad():
        a = run(one, b)["logits"]
        c = three(b["query"], b["supports"].repeat(1, 3, 1, 1, 1), b["support_labels"].repeat(1, 3, 1, 1))["logits"]
    assert torch.allclose(a, c, atol=1e-5) == equal


def test_pfenet_bins_fractions_and_oversized_bins():
    batch = episode(1, 24, 40, b=1)
    for bins in [(1.0, 0.5, 0.25, 0.125), (60, 30, 15, 8), (5, 2)]:
        model = tiny("pfenet", "resnet50", 1, bins=bins).train()
        out = run(model, batch)
        assert len(out["aux_logits"]) == len(bins) == len(model.init_merge) == len(model.alpha_conv) + 1
        assert out["aux_logits"][0].shape[-2:] == ((3, 5) if bins[0] == 1.0 else (bins[0], bins[0]))
        model.loss(out, batch)[0].backward()
    with pytest.raises(ValueError, match="fraction"):
        tiny("pfenet", "resnet50", 1, bins=(60, 2.5))


@pytest.mark.parametrize("prior_grad", [True, False])
def test_prior_grad_option(prior_grad):
    # layer4 feeds only the prior: with prior_grad=False (PFENet's no_grad) it gets no gradient
    model = tiny("pfenet", "resnet50", 1, prior_grad=prior_grad).train()
    batch = episode(1)
    model.loss(run(model, batch), batch)[0].backward()
    assert (model.layer4[0].conv1.weight.grad is not None) == prior_grad
    assert model.layer3[0].conv1.weight.grad is not None


def test_bad_inputs_are_named():
    model = tiny("baseline", "resnet50", 2)
    b = episode(1)
    with pytest.raises(ValueError, match="supports must be"):
        run(model, b)
    b2 = episode(2)
    out = run(model.eval(), b2)
    with pytest.raises(KeyError, match="query_label"):
        model.loss(out, {})
    with pytest.raises(ValueError, match="unknown method"):
        build_model("panet")
    with pytest.raises(TypeError, match="pfenet"):
        build_model("pfenet", kshot_reduce="sum")


def test_dilation_defaults_follow_the_authors():
    assert tiny("baseline", "resnet50", 1).layer3[0].conv2.dilation == (1, 1)   # SVF repo resnet.py
    assert tiny("pfenet", "resnet50", 1).layer3[0].conv2.dilation == (1, 1)
    assert tiny("bam", "resnet50", 1).layer3[0].conv2.dilation == (2, 2)        # PSPNet's dilation loop
    assert tiny("pfenet", "resnet50", 1, dilation="pfenet").layer3[0].conv2.dilation == (2, 2)


def test_gram_and_prior_stay_float32_under_autocast():
    from svf.models.common import gram_matrix, prior_mask

    big = torch.full((1, 4, 40, 40), 300.0)  # Gram entries 1.44e8: inf in float16 without the float32 guard
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(big)
        p = prior_mask(big, big, torch.ones(1, 1, 40, 40), (5, 5))
    assert g.dtype == torch.float32 and torch.allclose(g, torch.ones_like(g), atol=1e-5)
    assert p.dtype == torch.float32 and torch.isfinite(p).all()
    model = tiny("bam", "resnet50", 2).eval()
    batch = episode(2, b=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(run(model, batch)["logits"]).all()
