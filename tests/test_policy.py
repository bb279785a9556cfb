"""svf.policy: grammar, and for every table policy exactly the intended tensors train and receive gradients."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from svf.backbones import build_backbone
from svf.decompose import decompose, trainable_state_dict
from svf.policy import (PAPER_POLICIES, POLICY_PATTERN, apply_policy, is_canonical, param_groups, parse_policy,
                        set_bn_mode, trainable_backbone_names)

# expected selections written out independently of the implementation: (layers, tensor kinds)
EXPECTED = {
    "frozen": ((), set()), "frozen-bntrain": ((), set()),
    "svf": ((2, 3, 4), {"S"}), "svf-l4": ((4,), {"S"}), "svf-l34": ((3, 4), {"S"}),
    "svf-l1234": ((1, 2, 3, 4), {"S"}),
    "svf-U": ((2, 3, 4), {"U"}), "svf-V": ((2, 3, 4), {"V"}), "svf-US": ((2, 3, 4), {"U", "S"}),
    "svf-SV": ((2, 3, 4), {"S", "V"}), "svf-UV": ((2, 3, 4), {"U", "V"}), "svf-USV": ((2, 3, 4), {"U", "S", "V"}),
    "bn": ((2, 3, 4), {"bn"}), "svf-bn": ((2, 3, 4), {"S", "bn"}),
    "full": ((1, 2, 3, 4), {"conv1x1", "convkxk"}), "part-l234": ((2, 3, 4), {"conv1x1", "convkxk"}),
    "part-l34": ((3, 4), {"conv1x1", "convkxk"}), "part-l4": ((4,), {"conv1x1", "convkxk"}),
    "part-l234-3x3": ((2, 3, 4), {"convkxk"}), "part-l234-1x1": ((2, 3, 4), {"conv1x1"}),
    "svf-l4-USV-bn-bntrain": ((4,), {"U", "S", "V", "bn"}),
}
SVF_POLICIES = [p for p in EXPECTED if p.startswith("svf")]


def _tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "vgg16":
        return build_backbone("vgg16", width=0.125)
    return build_backbone("resnet50", width=0.125, depths=(1, 1, 2, 1))


def _kind(model: nn.Module, pname: str) -> str | None:
    owner_name, leaf = pname.rsplit(".", 1)
    owner = model.get_submodule(owner_name)
    if leaf == "vector_S":
        return "S"
    if owner_name.endswith(("conv_U", "fc_U")):
        return "U" if leaf == "weight" else "svf-bias"
    if owner_name.endswith(("conv_V", "fc_V")):
        return "V"
    if isinstance(owner, nn.BatchNorm2d):
        return "bn"
    if isinstance(owner, nn.Conv2d):
        return "conv1x1" if owner.kernel_size == (1, 1) else "convkxk"
    return None


def _expected(model: nn.Module, policy: str) -> set[str]:
    layers, kinds = EXPECTED[policy]
    return {n for n, _ in model.named_parameters() if int(n[5]) in layers and _kind(model, n) in kinds}


def _one_step(model: nn.Module, policy: str, size: int = 33) -> None:
    model.train()
    set_bn_mode(model, policy)
    torch.manual_seed(1)
    out = model(torch.randn(2, 3, size, size))[-1]
    (out * torch.randn_like(out)).sum().backward()


def test_expectations_cover_every_paper_policy():
    assert set(PAPER_POLICIES) <= set(EXPECTED)


@pytest.mark.parametrize("backbone,policy", [("resnet50", p) for p in EXPECTED] + [("vgg16", p) for p in SVF_POLICIES])
def test_exactly_the_intended_tensors_train(backbone, policy):
    model = apply_policy(_tiny(backbone), policy)
    expected = _expected(model, policy)
    if policy != "frozen" and not policy.startswith("frozen-"):
        assert expected, "the expectation selects nothing: test is broken"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected
    if not expected:
        return
    _one_step(model, policy)
    no_grad = [n for n in expected if model.get_parameter(n).grad is None
               or not model.get_parameter(n).grad.abs().sum() > 0]
    assert not no_grad, f"{policy}: no gradient for {no_grad[:5]}"
    leaked = [n for n, p in model.named_parameters() if n not in expected and p.grad is not None]
    assert not leaked, f"{policy}: unexpected gradients for {leaked[:5]}"


@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
def test_svf_decomposes_every_stage(backbone):
    model = apply_policy(_tiny(backbone), "svf-l4")
    plain = [n for n, m in model.named_modules() if type(m) is nn.Conv2d and not n.endswith(("conv_U", "conv_V"))]
    assert plain == []  # all of layer0..4, not only the trained layer4, as in the authors' code


def test_bn_mode_and_frozen_statistics():
    model = apply_policy(_tiny("resnet50"), "svf")
    stats = model.layer3[0].bn2.running_mean.clone()
    _one_step(model, "svf")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(m.training for m in bns) and torch.equal(model.layer3[0].bn2.running_mean, stats)
    model.train()
    set_bn_mode(model, "frozen-bntrain")
    assert all(m.training for m in bns)
    model.eval()
    set_bn_mode(model, "frozen-bntrain")
    assert not any(m.training for m in bns)
    # BN statistics drift in train mode, so the policy asks checkpoints to carry them
    extra = parse_policy("svf-bntrain").extra_state
    state = trainable_state_dict(model, extra=extra)
    assert "layer0.1.running_var" in state and "layer4.0.bn3.num_batches_tracked" in state
    assert not parse_policy("svf").extra_state


class _FewShotModel(nn.Module):
    """Backbone stages as direct attributes plus a head, like svf.models."""

    def __init__(self):
        super().__init__()
        backbone = _tiny("resnet50")
        for k in range(5):
            setattr(self, f"layer{k}", getattr(backbone, f"layer{k}"))
        self.head = nn.Conv2d(256, 2, 1)

    def forward(self, x):
        for k in range(5):
            x = getattr(self, f"layer{k}")(x)
        return [self.head(x)]


def test_param_groups_and_sgd_step_touch_only_trainables():
    model = apply_policy(_FewShotModel(), "svf")
    assert all(p.requires_grad for p in model.head.parameters())  # the head is not the policy's business
    groups = param_groups(model, "svf", lr=0.015, head_params=model.head.parameters())
    assert [g["name"] for g in groups] == ["backbone", "head"]
    assert groups[0]["lr"] == pytest.approx(0.0015) and groups[1]["lr"] == 0.015
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    assert {id(p) for p in groups[0]["params"]} == {id(model.get_parameter(n)) for n in trainable_backbone_names(model)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(groups, lr=0.015, momentum=0.9)
    _one_step(model, "svf")
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.endswith("vector_S") and int(k[5]) >= 2 or k.startswith("head.") for k in changed)
    frozen_groups = param_groups(apply_policy(_FewShotModel(), "frozen"), "frozen", 0.1, head_params=[])
    assert frozen_groups == []


def test_param_groups_errors():
    model = _FewShotModel()
    with pytest.raises(RuntimeError, match="call apply_policy"):
        param_groups(model, "svf", lr=0.1)
    apply_policy(model, "part-l4")
    with pytest.raises(ValueError, match="head parameters belong to layer0..4"):
        param_groups(model, "part-l4", lr=0.1, head_params=model.layer4.parameters())


def test_policy_selecting_nothing_is_refused():
    with pytest.raises(ValueError, match="'part-l234-1x1' selects no tensor"):
        apply_policy(_tiny("vgg16"), "part-l234-1x1")  # VGG has no 1x1 convs


def test_conventional_policy_on_decomposed_model_is_refused():
    model = decompose(_tiny("resnet50"))
    with pytest.raises(ValueError, match="merge"):
        apply_policy(model, "full")


def test_model_without_stages_is_refused():
    partial = nn.Module()
    for k in range(3):
        partial.add_module(f"layer{k}", nn.Conv2d(4, 4, 1))
    with pytest.raises(AttributeError, match=r"\['layer3', 'layer4'\]"):
        apply_policy(partial, "svf")


@pytest.mark.parametrize("spec,canonical", [
    ("svf-l234-S", "svf"), ("svf-S", "svf"), ("part-l1234", "full"), ("part", "part-l234"), ("svf-S-bn", "svf-bn"),
    ("bn-l234", "bn"), ("svf-l4-USV-bn-bntrain", "svf-l4-USV-bn-bntrain"), ("full-bntrain", "full-bntrain"),
    ({"kind": "svf", "layers": [4, 3], "subspaces": ["S", "U"], "bn": True}, "svf-l34-US-bn"),
    ({"kind": "part", "layers": [2, 3, 4], "kernels": "3x3"}, "part-l234-3x3"),
    ({"kind": "frozen", "bn_train": True}, "frozen-bntrain"),
])
def test_canonical_names(spec, canonical):
    policy = parse_policy(spec)
    assert policy.name == canonical and parse_policy(canonical) == policy and is_canonical(canonical)


def test_every_paper_policy_is_canonical_and_matches_the_schema_pattern():
    for name in PAPER_POLICIES:
        assert is_canonical(name) and re.match(POLICY_PATTERN, name), name


@pytest.mark.parametrize("bad", ["svf-l43", "svf-SU", "svf-l", "part-l234-5x5", "svf-bn-U", "frozen-bn", "SVF", "",
                                 "svf-l5", "bn-US"])
def test_invalid_specs_are_rejected(bad):
    assert not re.match(POLICY_PATTERN, bad)
    with pytest.raises(ValueError, match="valid forms: frozen, svf"):
        parse_policy(bad)


@pytest.mark.parametrize("spec,message", [
    ({"kind": "svf", "kernels": "1x1"}, "keys \\['kernels'\\] do not apply to kind 'svf'"),
    ({"kind": "svf", "subspaces": "X"}, "'subspaces'"),
    ({"kind": "part", "layers": [5]}, "'layers'"),
    ({"kind": "part", "layers": "234"}, "'layers'"),
    ({"kind": "lora"}, "'kind' must be one of"),
])
def test_invalid_dicts_name_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(spec)
