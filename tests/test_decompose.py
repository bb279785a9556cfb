"""svf.decompose on small layers and tiny backbones: exactness, the authors' state-dict layout, filters, merge,
S snapshots, S-only checkpoints (full-width backbones: test_decompose_fullsize.py)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from svf.backbones import build_backbone
from svf.decompose import (SVDConv2d, SVDLinear, choose_rank, decompose, decomposed_layers, kernel_kind,
                           load_trainable_state_dict, singular_values, trainable_state_dict)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _tiny_resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_backbone("resnet50", width=0.125, depths=(1, 1, 2, 1)).eval()


def test_factors_are_an_svd():
    conv = nn.Conv2d(6, 10, 3, padding=1)
    svd = SVDConv2d.from_conv(conv)
    s = svd.vector_S.detach().flatten().double()
    assert svd.rank == 10 and torch.all(s[:-1] >= s[1:])
    u = svd.conv_U.weight.detach().double().reshape(10, 10)
    v = svd.conv_V.weight.detach().double().reshape(10, -1)
    eye = torch.eye(10, dtype=torch.float64)
    assert torch.allclose(u.T @ u, eye, atol=1e-5) and torch.allclose(v @ v.T, eye, atol=1e-5)
    assert svd.conv_V.weight.dtype == torch.float32 and svd.conv_U.bias is not None
    assert torch.equal(svd.conv_U.bias, conv.bias) and svd.conv_V.bias is None


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=2, dilation=2),
    dict(in_channels=5, out_channels=7, kernel_size=(3, 1), padding=(1, 0), padding_mode="reflect"),
    dict(in_channels=8, out_channels=12, kernel_size=3, padding=1, groups=2),
    dict(in_channels=3, out_channels=64, kernel_size=3, stride=2, padding=1, bias=False),
])
def test_conv_variants_are_exact(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(**kwargs).double()
    svd = SVDConv2d.from_conv(conv)
    assert svd.conv_V.weight.dtype == torch.float64
    for attr in ("stride", "padding", "dilation", "groups", "padding_mode", "kernel_size"):
        assert getattr(svd.conv_V, attr) == getattr(conv, attr)
    x = torch.randn(2, kwargs["in_channels"], 11, 13, dtype=torch.float64)
    with torch.no_grad():
        assert _rel(svd(x), conv(x)) < 1e-10
        assert _rel(svd.to_conv()(x), conv(x)) < 1e-10


def test_grouped_rank_and_depthwise_skipped():
    model = nn.Sequential(nn.Conv2d(8, 12, 3, groups=2), nn.Conv2d(12, 12, 3, groups=12),
                          nn.Conv2d(12, 24, 1, groups=12))
    decompose(model)
    assert decomposed_layers(model) == ["0"]  # depthwise (in == groups) convs stay plain, as in the authors' code
    assert model[0].rank == 2 * min(6, 4 * 9) and model[0].conv_U.groups == 2


def test_official_rank_rule():
    assert [choose_rank(n, "official") for n in (27, 24, 64, 3, 1, 5)] == [24, 24, 64, 1, 1, 4]
    assert [choose_rank(n, "full") for n in (27, 3)] == [27, 3]
    conv = nn.Conv2d(3, 64, 3, padding=1, bias=False)
    assert SVDConv2d.from_conv(conv, "official").rank == 24
    with pytest.raises(ValueError, match="unknown rank rule 'half'"):
        decompose(nn.Sequential(conv), rank="half")


def test_authors_state_dict_layout_loads():
    """Build the authors' keys and factor arrangement by hand (torch.svd, V^T reshaped into conv_V, U into conv_U)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 25, 5))
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        ref = model(x)
    conv, lin = model[0], model[3]
    u, s, v = torch.svd(conv.weight.detach().reshape(6, -1))
    lu, ls, lv = torch.svd(lin.weight.detach())
    theirs = {
        "0.conv_U.weight": u.reshape(6, 6, 1, 1), "0.conv_U.bias": conv.bias.detach(),
        "0.conv_V.weight": v.T.reshape(6, 4, 3, 3), "0.vector_S": s.reshape(1, 6, 1, 1),
        "3.fc_V.weight": lv.T, "3.vector_S": ls.reshape(1, 5), "3.fc_U.weight": lu, "3.fc_U.bias": lin.bias.detach(),
    }
    ours = decompose(copy.deepcopy(model))
    assert set(ours.state_dict()) == set(theirs)
    ours.load_state_dict(theirs, strict=True)
    with torch.no_grad():
        assert _rel(ours(x), ref) < 1e-5


def test_linear_gets_real_weights():
    """The authors' replace_fullrank_with_lowrank leaves SVD_Linear at random init; ours reproduces the layer."""
    torch.manual_seed(0)
    lin = nn.Linear(7, 3)
    svd = decompose(lin)
    assert isinstance(svd, SVDLinear) and svd.rank == 3 and svd.vector_S.shape == (1, 3)
    x = torch.randn(4, 2, 7)
    with torch.no_grad():
        assert _rel(svd(x), lin(x)) < 1e-5
        assert _rel(svd.to_linear()(x), lin(x)) < 1e-5


def test_filters_kernels_include_exclude():
    m = _tiny_resnet()
    decompose(m.layer2, kernels=("1x1",))
    assert all(kernel_kind(m.layer2.get_submodule(n)) == "1x1" for n in decomposed_layers(m.layer2))
    assert isinstance(m.layer2[0].conv2, nn.Conv2d) and isinstance(m.layer2[0].downsample[0], SVDConv2d)
    m = _tiny_resnet()
    decompose(m, include=["layer3.*", "layer4.0.conv2"], exclude="*.downsample.*")
    names = decomposed_layers(m)
    assert "layer4.0.conv2" in names and "layer3.1.conv1" in names and "layer4.0.conv1" not in names
    assert not any("downsample" in n or n.startswith(("layer0", "layer1", "layer2")) for n in names)
    with pytest.raises(ValueError, match="kernels"):
        decompose(m, kernels=("3x3",))


def test_decompose_is_idempotent_and_keeps_factors():
    m = decompose(_tiny_resnet())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    names = decomposed_layers(m)
    decompose(m)
    assert decomposed_layers(m) == names and all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_merged_fast_path_only_when_frozen():
    torch.manual_seed(0)
    svd = SVDConv2d.from_conv(nn.Conv2d(8, 8, 1)).requires_grad_(False)
    x = torch.randn(1, 8, 32, 32)
    assert svd._use_merged(x)  # 1024 pixels, rank 8: the merge costs less than one extra 1x1 conv
    svd.vector_S.requires_grad_(True)
    with torch.enable_grad():
        assert not svd._use_merged(x)
        svd(x).sum().backward()
    assert svd.vector_S.grad is not None and svd.vector_S.grad.abs().sum() > 0
    with torch.no_grad():
        assert svd._use_merged(x)
        fast = svd(x)
        SVDConv2d.merge_frozen = False
        try:
            slow = svd(x)
        finally:
            SVDConv2d.merge_frozen = True
    assert _rel(fast, slow) < 1e-6


def test_singular_values_snapshot():
    m = decompose(_tiny_resnet())
    snap = singular_values(m)
    assert list(snap) == decomposed_layers(m)
    s = snap["layer3.1.conv2"]
    assert s.ndim == 1 and s.device.type == "cpu" and s.dtype == torch.float32 and s.numel() == 32
    with torch.no_grad():
        m.layer3[1].conv2.vector_S.mul_(2)
    assert torch.allclose(singular_values(m)["layer3.1.conv2"], 2 * s)  # a copy, not a view


def test_trainable_state_round_trip_and_errors():
    m = decompose(_tiny_resnet(seed=3))
    for name, p in m.named_parameters():
        p.requires_grad_(name.endswith("vector_S"))
    m.layer1[0].bn1.weight.requires_grad_(True)  # a trainable BN also brings its running stats
    with torch.no_grad():
        for layer in (m.layer2[0].conv2, m.layer4[0].conv1):
            layer.vector_S.mul_(1.5)
        m.layer1[0].bn1.running_mean.add_(0.25)
    state = trainable_state_dict(m)
    assert "layer1.0.bn1.running_mean" in state and "layer1.0.bn1.weight" in state
    assert "layer2.0.conv2.conv_U.weight" not in state
    assert sum(k.endswith("vector_S") for k in state) == len(decomposed_layers(m))
    fresh = decompose(_tiny_resnet(seed=3))  # same weights -> same (sign-fixed) factors
    load_trainable_state_dict(fresh, state)
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert _rel(fresh(x)[-1], m(x)[-1]) < 1e-6
    with pytest.raises(KeyError, match="layer9.vector_S"):
        load_trainable_state_dict(fresh, {"layer9.vector_S": torch.ones(1)})
    assert load_trainable_state_dict(fresh, {"layer9.vector_S": torch.ones(1)}, strict=False) == []
    bad = {"layer0.0.vector_S": torch.ones(1, 5, 1, 1)}  # e.g. a checkpoint made with another rank rule
    with pytest.raises(ValueError, match=r"layer0.0.vector_S: checkpoint \(1, 5, 1, 1\)"):
        load_trainable_state_dict(fresh, bad)
    extra = trainable_state_dict(m, extra="layer0.*running_var")
    assert "layer0.1.running_var" in extra and "layer0.1.running_mean" not in extra


def test_svd_layers_keep_the_autocast_dtype_under_bf16():
    """Under bf16 autocast no float32 activation leaves an SVD layer: neither the scaled V output that conv_U / fc_U
    reads nor the layer's output (a float32 S times a bf16 activation would be promoted to float32); the master S
    stays float32 and gets a float32 gradient."""
    from svf.policy import apply_policy, set_bn_mode

    torch.manual_seed(0)
    backbone = apply_policy(build_backbone("resnet50", width=0.125, depths=(1, 1, 2, 1)), "svf")
    mlp = decompose(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
    seen: dict[str, list[torch.dtype]] = {}

    def record(name):
        def pre(module, args):
            seen.setdefault(name + " product", []).append(args[0].dtype)

        def post(module, args, output):
            seen.setdefault(name + " output", []).append(output.dtype)
        return pre, post

    for net in (backbone, mlp):
        for name, layer in net.named_modules():
            if isinstance(layer, (SVDConv2d, SVDLinear)):
                pre, post = record(name)
                (layer.conv_U if isinstance(layer, SVDConv2d) else layer.fc_U).register_forward_pre_hook(pre)
                layer.register_forward_hook(post)
    backbone.train()
    set_bn_mode(backbone, "svf")
    x = torch.randn(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = backbone(x)
        out = features[-1].float().mean() + mlp(torch.randn(5, 8)).float().mean()
    out.backward()
    trained = [n for n, m in backbone.named_modules() if isinstance(m, SVDConv2d) and m.vector_S.requires_grad]
    assert len(trained) > 10 and all(f"{n} product" in seen for n in trained)  # the three-step path ran
    fp32 = {name: dtypes for name, dtypes in seen.items() if torch.float32 in dtypes}
    assert not fp32, f"float32 activations under bf16 autocast: {sorted(fp32)[:5]}"
    assert len(seen) >= 2 * (len(trained) + 2)
    layer = dict(backbone.named_modules())[trained[0]]
    assert layer.vector_S.dtype == torch.float32 and layer.vector_S.grad.dtype == torch.float32
    assert torch.isfinite(layer.vector_S.grad).all() and layer.vector_S.grad.abs().sum() > 0
