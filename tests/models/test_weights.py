"""ImageNet weight loading (svf.backbones.weights) from torchvision-built state dicts and a hand-built v2 layout."""
import pytest
import torch
import torchvision

from svf.backbones import build_backbone
from svf.backbones.weights import load_imagenet_weights, map_imagenet_keys, read_state_dict


V2_STEM = {0: "conv1", 1: "bn1", 3: "conv2", 4: "bn2", 6: "conv3", 7: "bn3"}


def v2_layout(backbone):
    """Our deep-stem state dict written in PSPNet/semseg's resnet50_v2.pth key layout (plus an fc)."""
    state = {}
    for key, value in backbone.state_dict().items():
        if key.startswith("layer0."):
            _, idx, rest = key.split(".", 2)
            key = f"{V2_STEM[int(idx)]}.{rest}"
        state[key] = value.clone()
    c = backbone.channels["layer4"]
    state["fc.weight"], state["fc.bias"] = torch.zeros(10, c), torch.zeros(10)
    return state


def test_resnet_v2_layout_round_trip(tmp_path):
    torch.manual_seed(0)
    src = build_backbone("resnet50", width=0.125, depths=(1, 1, 1, 1))
    path = tmp_path / "resnet50_v2.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in v2_layout(src).items()}}, path)
    dst = build_backbone("resnet50", width=0.125, depths=(1, 1, 1, 1))
    report = load_imagenet_weights(dst, path)
    assert report.ignored == ["fc.bias", "fc.weight"]
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())


def test_torchvision_resnet50_into_standard_stem():
    tv = torchvision.models.resnet50(weights=None).eval()
    ours = build_backbone("resnet50", stem="standard").eval()
    report = load_imagenet_weights(ours, tv.state_dict())
    assert len(report.loaded) == len(tv.state_dict()) - 2
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # our layer3/4 are dilated, layers 0-2 must match torchvision exactly
        ref = tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))
        assert torch.allclose(ours(x)[2], ref, atol=1e-5)
    with pytest.raises(RuntimeError, match="stem='standard'"):
        load_imagenet_weights(build_backbone("resnet50", width=0.125, depths=(1, 1, 1, 1)), tv.state_dict(),
                              layout="torchvision_resnet")


def test_torchvision_vgg16_bn():
    # torchvision's vgg16_bn features (its 102M-parameter classifier skipped for speed; a stand-in key is ignored)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"], batch_norm=True).eval()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    ours = build_backbone("vgg16").eval()
    report = load_imagenet_weights(ours, state)
    assert report.ignored == ["classifier.6.bias"]
    x = torch.randn(1, 3, 32, 32)  # divisible by 16: ceil_mode pooling agrees with torchvision's floor
    with torch.no_grad():
        assert torch.allclose(ours(x)[4], features[:43](x), atol=1e-4)


def test_missing_and_unexpected_keys_are_listed():
    src = build_backbone("resnet50", width=0.125, depths=(1, 1, 1, 1))
    state = v2_layout(src)
    del state["layer3.0.conv2.weight"]
    state["layer9.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError) as err:
        load_imagenet_weights(build_backbone("resnet50", width=0.125, depths=(1, 1, 1, 1)), state)
    assert "layer3.0.conv2.weight" in str(err.value) and "layer9.extra" in str(err.value)
    # checkpoints without num_batches_tracked (old torch) load, and the report says so
    state = {k: v for k, v in v2_layout(src).items() if not k.endswith("num_batches_tracked")}
    report = load_imagenet_weights(build_backbone("resnet50", width=0.125, depths=(1, 1, 1, 1)), state)
    assert report.untouched_buffers and "num_batches_tracked" in report.summary()


def test_vgg_index_mapping_and_bad_sources(tmp_path):
    mapped, ignored = map_imagenet_keys({"features.24.weight": torch.zeros(1), "classifier.0.bias": torch.zeros(1)},
                                        "torchvision_vgg")
    assert list(mapped) == ["layer3.0.weight"] and ignored == ["classifier.0.bias"]
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="layout"):
        load_imagenet_weights(build_backbone("vgg16", width=0.125), {"foo.weight": torch.zeros(1)})
