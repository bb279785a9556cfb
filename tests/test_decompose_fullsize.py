"""Full-width backbones (random init): exactness of rank ``full``, merge, the authors' ranks and counts
(docs/sources.md#svd-decomposition) with rank ``official``, and the size of an S-only checkpoint.

Two independent decompositions of the same ResNet-50 are made once per module (rank full and rank official); layers
where both rules keep the same rank must come out identical, which is what makes S-only checkpoints portable."""
from __future__ import annotations

import copy
import io
import time
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from svf.backbones import build_backbone
from svf.decompose import (SVDConv2d, decompose, decomposed_layers, load_trainable_state_dict, merge,
                           trainable_state_dict)
from svf.policy import apply_policy, count_trainable


@contextmanager
def _one_thread():
    # LAPACK/OpenMP with 2 threads on a shared 2-core machine mostly spin-waits; one thread is faster there
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    with _one_thread():
        yield


@pytest.fixture(scope="module")
def r50(_single_thread):
    """(plain eval ResNet-50 v2, its rank-full decomposition, its rank-official decomposition under policy svf)."""
    torch.manual_seed(0)
    plain = build_backbone("resnet50").eval()
    start = time.perf_counter()
    full = decompose(copy.deepcopy(plain))
    print(f"\ndecompose(ResNet-50, rank=full): {time.perf_counter() - start:.2f} s on CPU, 1 thread")
    official = apply_policy(copy.deepcopy(plain), "svf", rank="official")
    return plain, full, official


@pytest.fixture(scope="module")
def vgg(_single_thread):
    torch.manual_seed(0)
    plain = build_backbone("vgg16")
    svf = apply_policy(copy.deepcopy(plain), "svf", rank="official")
    return plain, svf


def _ranks(model: nn.Module, prefix: str) -> list[int]:
    return [model.get_submodule(n).rank for n in decomposed_layers(model) if n.startswith(prefix)]


def test_resnet50_full_rank_is_exact(r50):
    plain, full, _ = r50
    assert sum(isinstance(m, nn.Conv2d) for m in plain.modules()) == len(decomposed_layers(full)) == 55
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ref = plain(x)
        for merge_frozen in (False, True):  # the three-step form and the merged fast path
            SVDConv2d.merge_frozen = merge_frozen
            try:
                out = full(x)
            finally:
                SVDConv2d.merge_frozen = True
            for k, (a, b) in enumerate(zip(out, ref)):
                assert _rel(a, b) < 1e-5, f"layer{k} merge_frozen={merge_frozen}: {_rel(a, b):.2e}"


def test_merge_restores_plain_convs(r50):
    plain, full, _ = r50
    merged = merge(copy.deepcopy(full))
    assert not decomposed_layers(merged)
    assert _count(merged) == _count(plain) == 23_631_808 and _count(full) == 28_831_540
    for (n1, m1), (n2, m2) in zip(plain.named_modules(), merged.named_modules()):
        assert n1 == n2 and type(m1) is type(m2)
        if isinstance(m1, nn.Conv2d):
            for attr in ("stride", "padding", "dilation", "groups", "kernel_size", "padding_mode"):
                assert getattr(m1, attr) == getattr(m2, attr), (n1, attr)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        SVDConv2d.merge_frozen = False
        try:
            three_step = full(x)[-1]
        finally:
            SVDConv2d.merge_frozen = True
        assert _rel(merged(x)[-1], three_step) < 1e-5


def test_resnet50_official_ranks(r50):
    plain, full, official = r50
    assert _ranks(official, "layer0.") == [24, 64, 128] and _ranks(full, "layer0.") == [27, 64, 128]
    for k, width, downsample in zip((1, 2, 3, 4), (64, 128, 256, 512), (128, 256, 512, 1024)):
        stage = getattr(official, f"layer{k}")
        for block in stage:
            assert [block.conv1.rank, block.conv2.rank, block.conv3.rank] == [width] * 3
        assert stage[0].downsample[0].rank == downsample
    differ = [n for n in decomposed_layers(full) if full.get_submodule(n).rank != official.get_submodule(n).rank]
    assert differ == ["layer0.0"]  # the 3->64 stem conv (27 -> 24) is the only truncation


def test_two_decompositions_agree(r50):
    _, full, official = r50
    a, b = full.state_dict(), official.state_dict()
    same_rank = [k for k in a if not k.startswith("layer0.0.")]
    assert a.keys() == b.keys() and len(same_rank) == len(a) - 3  # conv_V, vector_S, conv_U of the stem conv
    assert all(torch.equal(a[k], b[k]) for k in same_rank)  # deterministic, sign-fixed factors


def test_resnet50_counts(r50):
    plain, _, official = r50
    assert _count(plain) == 23_631_808 and _count(official) == 28_831_264
    s_counts = {k: sum(m.rank for m in getattr(official, f"layer{k}").modules() if isinstance(m, SVDConv2d))
                for k in range(5)}
    assert s_counts == {0: 216, 1: 704, 2: 1_792, 3: 5_120, 4: 5_632}
    assert count_trainable(official) == {"layer0": 0, "layer1": 0, "layer2": 1_792, "layer3": 5_120,
                                         "layer4": 5_632}


def test_vgg16_official_ranks_and_counts(vgg):
    plain, svf = vgg
    assert [_ranks(svf, f"layer{k}.") for k in range(5)] == [[24, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]
    assert _count(plain) == 14_723_136 and _count(svf) == 16_534_112
    assert count_trainable(svf) == {"layer0": 0, "layer1": 0, "layer2": 768, "layer3": 1_536, "layer4": 1_536}
    assert sum(count_trainable(svf).values()) == 3_840


def test_s_only_checkpoint_size_and_round_trip(r50):
    _, full, official = r50
    trained = copy.deepcopy(official)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.mul_(1 + 0.1 * torch.randn_like(p))  # stands in for training
    state = trainable_state_dict(trained)
    assert all(k.endswith("vector_S") and k[5] in "234" for k in state)
    assert len(state) == sum(1 for n in decomposed_layers(official) if n[5] in "234")
    assert sum(v.numel() for v in state.values()) == 12_544
    buffer = io.BytesIO()
    torch.save(state, buffer)
    size = buffer.tell()
    print(f"\nS-only checkpoint of ResNet-50 SVF: {size / 1024:.0f} KiB ({len(state)} tensors)")
    assert 12_544 * 4 < size < 300 * 1024
    buffer.seek(0)
    # the rank-full model is an independent, fresh decomposition (only its stem differs, which S-only does not hold)
    fresh = apply_policy(copy.deepcopy(full), "svf")
    assert sorted(load_trainable_state_dict(fresh, torch.load(buffer))) == sorted(state)
    ours, ref = fresh.state_dict(), trained.state_dict()
    assert all(torch.equal(ours[k], ref[k]) for k in ref if not k.startswith("layer0.0."))
