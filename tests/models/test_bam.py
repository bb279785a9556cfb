"""BAM specifics: merge-conv init, K-shot re-weighting, frozen base branch, base-learner loading, class exclusion."""
import pytest
import torch
from torch import nn

from svf.models import build_base_learner, build_model
from svf.models.bam import BASE_STAGES
from svf.models.common import STAGES


BASE = list(range(6, 21))


def tiny_kwargs(backbone="resnet50"):
    return dict(backbone=backbone, width=1 / 32, depths=(1, 1, 1, 1) if backbone == "resnet50" else None,
                base_classes=BASE)


def tiny_bam(shot=1, **kw):
    torch.manual_seed(0)
    return build_model("bam", shot=shot, reduce_dim=4, base_cls_dim=8, **tiny_kwargs(), **kw)


def tiny_pspnet():
    torch.manual_seed(1)
    return build_base_learner(cls_dim=8, **tiny_kwargs())


class SVDConv(nn.Module):
    """Test stand-in for svf.decompose's conv (conv_V -> * vector_S -> conv_U), exact at full rank."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        w = conv.weight.detach()
        u, s, vh = torch.linalg.svd(w.flatten(1), full_matrices=False)
        r = s.numel()
        self.conv_V = nn.Conv2d(conv.in_channels, r, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                                bias=False)
        self.conv_V.weight.data = vh.reshape(r, *w.shape[1:]).clone()
        self.vector_S = nn.Parameter(s.view(1, r, 1, 1).clone())
        self.conv_U = nn.Conv2d(r, conv.out_channels, 1, bias=conv.bias is not None)
        self.conv_U.weight.data = u.reshape(*u.shape, 1, 1).clone()
        if conv.bias is not None:
            self.conv_U.bias.data = conv.bias.detach().clone()

    def forward(self, x):
        return self.conv_U(self.conv_V(x) * self.vector_S)


def fake_decompose(module: nn.Module):
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, SVDConv(child))
        else:
            fake_decompose(child)


def episode(shot=1, h=33, w=41, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, h, w, generator=g), torch.randn(2, shot, 3, h, w, generator=g),
            (torch.rand(2, shot, h, w, generator=g) > 0.5).long())


def test_merge_convs_start_at_one_zero_and_kshot_rw():
    one, five = tiny_bam(1), tiny_bam(5)
    for m in (one, five):
        for conv in (m.gram_merge, m.cls_merge):
            assert conv.bias is None and conv.weight.flatten().tolist() == [1.0, 0.0]
    assert not hasattr(one, "kshot_rw")
    assert [tuple(five.kshot_rw[i].weight.shape) for i in (0, 2)] == [(2, 5, 1, 1), (5, 2, 1, 1)]
    assert tuple(tiny_bam(3, kshot_trans_dim=0).kshot_rw.weight.shape) == (3, 3, 1, 1)


def test_frozen_base_branch():
    m = tiny_bam(1).train()
    frozen = [getattr(m, n) for n in BASE_STAGES] + [m.learner_base]
    assert not any(p.requires_grad for f in frozen for p in f.parameters())
    assert all(not b.training for f in frozen for b in f.modules() if isinstance(b, nn.BatchNorm2d))
    assert m.layer1[0].bn1.training  # the meta backbone's BN mode is the policy's business
    head = {id(p) for h in m.head_modules() for p in h.parameters()}
    assert not head & {id(p) for f in frozen for p in f.parameters()}
    # independent copies: layer0p equals layer0 at construction but is a different tensor
    assert torch.equal(m.layer0[0].weight, m.layer0p[0].weight) and m.layer0[0].weight is not m.layer0p[0].weight


def test_load_base_learner_and_base_output():
    psp, bam = tiny_pspnet().eval(), tiny_bam(1).eval()
    bam.load_base_learner(psp)
    for s in STAGES:
        for key, value in getattr(psp, s).state_dict().items():
            assert torch.equal(getattr(bam, s).state_dict()[key], value)
            assert torch.equal(getattr(bam, s + "p").state_dict()[key], value)
    q, s, l = episode()
    with torch.no_grad():
        assert torch.allclose(bam(q, s, l)["base_logits"], psp(q), atol=1e-5)
    # a model built with base_learner= is the same
    with torch.no_grad():
        other = tiny_bam(1, base_learner=psp.state_dict()).eval()
        assert torch.allclose(other(q, s, l)["base_logits"], psp(q), atol=1e-5)


def test_decomposed_meta_backbone_leaves_base_branch_alone():
    bam = tiny_bam(1).eval()
    q, s, l = episode()
    with torch.no_grad():
        before = bam(q, s, l)
    for name in STAGES:
        fake_decompose(getattr(bam, name))
    assert "layer2.0.conv1.vector_S" in bam.state_dict() and "layer2p.0.conv1.weight" in bam.state_dict()
    with torch.no_grad():
        after = bam(q, s, l)
    assert torch.allclose(before["logits"], after["logits"], atol=1e-4)
    with pytest.raises(RuntimeError, match="already SVD-decomposed"):
        bam.load_base_learner(tiny_pspnet())


def test_training_needs_class_id_and_excludes_that_class():
    bam = tiny_bam(1).train()
    q, s, l = episode()
    with pytest.raises(ValueError, match="class_id"):
        bam(q, s, l)
    # fixed base probabilities: background 0.1, channel of class 6 (base index 1) 0.5, the 14 others 0.4/14
    probs = torch.full((2, 16, 5, 6), 0.4 / 14)
    probs[:, 0], probs[:, 1] = 0.1, 0.5
    bam.base_forward = lambda query: probs.log()
    with torch.no_grad():
        bam.cls_merge.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))  # final bg = base map
        train_bg = bam(q, s, l, class_id=torch.tensor([6, 7]))["logits"][:, 0]
        eval_bg = bam.eval()(q, s, l)["logits"][:, 0]
    assert torch.allclose(eval_bg, torch.full_like(eval_bg, 0.9), atol=1e-5)
    assert torch.allclose(train_bg[0], torch.full_like(train_bg[0], 0.4), atol=1e-5)       # class 6 left out
    assert torch.allclose(train_bg[1], torch.full_like(train_bg[1], 0.9 - 0.4 / 14), atol=1e-5)


def test_loss_uses_base_labels_from_full_labels():
    bam = tiny_bam(1).eval()
    q, s, l = episode()
    out = bam(q, s, l)
    full = torch.full((2, 33, 41), 7)
    full[:, :5] = 255
    full[:, 5:10] = 1  # novel -> base label 0
    _, parts = bam.loss(out, {"query_label": (full == 1).long(), "query_label_full": full})
    base_label = bam.base_labels(full)
    assert base_label[0, 0, 0] == 255 and base_label[0, 6, 0] == 0 and base_label[0, 20, 0] == 2
    ce = nn.functional.cross_entropy(out["base_logits"], base_label, ignore_index=255)
    assert parts["base"] == pytest.approx(float(ce), rel=1e-5)
    with pytest.raises(ValueError, match="base_classes"):
        build_model("bam", num_base_classes=15, base_classes=[1, 2], **{k: v for k, v in tiny_kwargs().items()
                                                                          if k != "base_classes"})


def test_pspnet_forward_and_loss():
    psp = tiny_pspnet().train()
    x = torch.randn(2, 3, 30, 42)
    logits = psp(x)
    assert logits.shape == (2, 16, 30, 42)
    raw = torch.randint(0, 21, (2, 30, 42))
    loss, _ = psp.loss(logits, raw)
    loss.backward()
    assert psp.layer1[0].conv1.weight.grad is not None and psp.cls[4].weight.grad is not None
    assert psp.base_labels(torch.tensor([0, 1, 5, 6, 20, 255])).tolist() == [0, 0, 0, 1, 15, 255]
    assert [id(m) for m in psp.head_modules()] == [id(psp.ppm), id(psp.cls)]
