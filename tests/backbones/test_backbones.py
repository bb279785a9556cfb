import pytest
import torch

from svf.backbones import build_backbone


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_authors_backbones():
    # docs/sources.md#svd-decomposition: R50 v2 deep stem 23,631,808; VGG16-BN features 0-42 14,723,136
    assert _count(build_backbone("resnet50")) == 23_631_808
    assert _count(build_backbone("vgg16")) == 14_723_136


@pytest.mark.parametrize("dilation", ["pfenet", "torchvision"])
def test_resnet_output_stride_8(dilation):
    m = build_backbone("resnet50", width=0.125, dilation=dilation).eval()
    feats = m(torch.randn(1, 3, 65, 65))
    assert [f.shape[-1] for f in feats] == [17, 17, 9, 9, 9]
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128, 256]


def test_dilation_patterns_differ_as_documented():
    pf = build_backbone("resnet50", dilation="pfenet")
    tv = build_backbone("resnet50", dilation="torchvision")
    assert pf.layer3[0].conv2.dilation == (2, 2) and tv.layer3[0].conv2.dilation == (1, 1)
    assert pf.layer4[0].conv2.dilation == (4, 4) and tv.layer4[0].conv2.dilation == (2, 2)
    for m in (pf, tv):
        assert m.layer3[5].conv2.dilation == (2, 2) and m.layer4[2].conv2.dilation == (4, 4)
        assert m.layer3[0].downsample[0].stride == (1, 1)


def test_vgg_stage_strides():
    m = build_backbone("vgg16", width=0.125).eval()
    feats = m(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]


def test_reduced_depth_keeps_names():
    m = build_backbone("resnet50", width=0.125, depths=(1, 1, 2, 1))
    names = {n for n, _ in m.named_modules()}
    assert "layer3.1.conv2" in names and "layer3.2.conv2" not in names


def test_unknown_backbone_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet18")
