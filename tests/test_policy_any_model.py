"""Policies on any model through module-name globs: a stock torchvision ResNet-50 and a model of Linear layers."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from svf.decompose import decomposed_layers
from svf.policy import apply_policy, param_groups, parse_policy, selected_parameters, set_bn_mode

ROOT = Path(__file__).resolve().parents[1]


def test_svf_on_a_stock_torchvision_resnet50():
    net = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
    policy = {"kind": "svf", "include": ["layer2.*", "layer3.*", "layer4.*"]}
    apply_policy(net, policy)
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    s_count = sum(p.numel() for n, p in net.named_parameters() if p.requires_grad and n.endswith("vector_S"))
    assert s_count == 12_544  # layer2-4 of ResNet-50, as the authors' count
    # inside the globs only S trains; outside (stem, layer1, fc) the policy leaves the parameters as they were
    assert all(n.endswith("vector_S") for n in names if n.startswith(("layer2.", "layer3.", "layer4.")))
    assert "fc.weight" in names and "layer1.0.conv1.weight" in names
    assert net.conv1.weight.requires_grad  # the stem is not governed by these globs
    assert not any(n.startswith(("layer1.", "conv1")) for n in decomposed_layers(net))
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=1e-3, atol=1e-4)  # full-rank SVD: the same network
    net.train()
    set_bn_mode(net, policy)
    assert not net.layer3[0].bn1.training and net.bn1.training  # governed BN frozen, the stem's left alone
    groups = param_groups(net, policy, lr=0.01, head_params=net.fc.parameters())
    assert [g["name"] for g in groups] == ["backbone", "head"] and groups[0]["lr"] == pytest.approx(0.001)
    assert parse_policy(policy).name == "svf-S@layer2.*,layer3.*,layer4.*"


def test_svf_on_a_model_of_linear_layers_trains_only_s():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(8, 16)
    with torch.no_grad():
        before = mlp(x)
    apply_policy(mlp, {"kind": "svf", "include": ["0", "2"]})  # the last layer stays a plain, trainable head
    assert decomposed_layers(mlp) == ["0", "2"]
    torch.testing.assert_close(mlp(x), before, rtol=1e-4, atol=1e-5)
    trained = {n for n, _ in selected_parameters(mlp, {"kind": "svf", "include": ["0", "2"]})}
    assert trained == {"0.vector_S", "2.vector_S"}
    snapshot = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    opt = torch.optim.SGD([p for p in mlp.parameters() if p.requires_grad], lr=0.1)
    mlp(x).pow(2).mean().backward()
    opt.step()
    changed = {n for n, p in mlp.named_parameters() if not torch.equal(p, snapshot[n])}
    assert changed == {"0.vector_S", "2.vector_S", "4.weight", "4.bias"}


def test_globs_that_match_nothing_and_mixed_layers_are_refused():
    with pytest.raises(ValueError, match="selects no tensor"):
        apply_policy(nn.Sequential(nn.Linear(4, 4)), {"kind": "svf", "include": ["encoder.*"]})
    with pytest.raises(ValueError, match="'include' must be a non-empty list of module-name globs and replaces"):
        parse_policy({"kind": "svf", "include": ["a"], "layers": [3]})


def _python_block(doc: str, marker: str) -> str:
    text = (ROOT / doc).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if marker in b]
    assert found, f"no python block with {marker!r} in {doc}"
    return found[0]


@pytest.mark.parametrize("doc, marker", [("docs/core.md", "# a stock torchvision ResNet-50"),
                                         ("README.md", "# a model of Linear layers")])
def test_the_documented_examples_run(doc, marker, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples save files into the working directory
    exec(compile(_python_block(doc, marker), doc, "exec"), {})
