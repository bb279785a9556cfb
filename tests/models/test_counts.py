"""Full-size trainable-head parameter counts equal the authors' (docs/sources.md#parameter-counts) (built on the meta device: no memory, fast)."""
import pytest
import torch

from svf.models import build_model


def head_counts(method, backbone, shot, **kw):
    with torch.device("meta"):
        model = build_model(method, backbone=backbone, shot=shot, num_base_classes=15, **kw)
    trainable = sum(p.numel() for m in model.head_modules() for p in m.parameters() if p.requires_grad)
    outside = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("layer"))
    return trainable, outside, model


@pytest.mark.parametrize("method,backbone,shot,expected", [
    ("baseline", "resnet50", 1, 4_917_250), ("baseline", "vgg16", 1, 4_524_034),
    ("pfenet", "resnet50", 1, 10_817_034), ("pfenet", "vgg16", 1, 10_423_818),
    ("bam", "resnet50", 1, 4_917_254), ("bam", "resnet50", 5, 4_917_281), ("bam", "vgg16", 1, 4_524_038),
])
def test_head_parameter_counts(method, backbone, shot, expected):
    kw = {"optimize_down_query": True} if method == "baseline" else {}
    trainable, outside, model = head_counts(method, backbone, shot, **kw)
    assert trainable == expected
    if method != "bam":  # BAM also holds the frozen PSPNet head outside layer0..4
        assert outside == expected


@pytest.mark.parametrize("backbone,down_query", [("resnet50", 1536 * 256), ("vgg16", 768 * 256)])
def test_baseline_default_leaves_down_query_untrained(backbone, down_query):
    # docs/sources.md#parameter-counts: the authors' count includes down_query, which their optimizer never receives
    trainable, outside, _ = head_counts("baseline", backbone, 5)
    assert outside - trainable == down_query
