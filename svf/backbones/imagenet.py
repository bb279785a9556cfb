"""Where the backbones' ImageNet weights come from: one download per backbone (and per ``weights.resnet50``
choice), its URL or Google Drive folder and its checksum. ``svf.data.download`` fetches them like any other artifact
(its ``REGISTRY``). Plain data, no torch: the Snakefile reads it while it builds the DAG."""
from __future__ import annotations

#: Each weights file as ``svf.data.download.Artifact`` fields (key -> fields besides the key).
IMAGENET_WEIGHTS: dict[str, dict] = {
    "vgg16_bn": dict(
        filename="vgg16_bn-6c64b313.pth", urls=("https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",),
        sha256_prefix="6c64b313", size="528 MB", description="torchvision VGG16-BN ImageNet weights"),
    "resnet50_torchvision": dict(
        filename="resnet50-0676ba61.pth", urls=("https://download.pytorch.org/models/resnet50-0676ba61.pth",),
        sha256_prefix="0676ba61", size="98 MB",
        description="torchvision ResNet-50 ImageNet weights (7x7 stem; with weights.resnet50: torchvision)"),
    "resnet50_v2": dict(
        filename="resnet50_v2.pth", gdrive_folder="1Hrz1wOxOZm4nIIS7UMJeL79AQrdvpj6v", size="100 MB",
        description="ResNet-50 'v2' deep-stem ImageNet weights (PFENet/semseg Google Drive folder); "
                    "no published checksum: the sha256 of the first download is recorded"),
}

#: What ``svf download weights`` fetches: the weights of the paper's backbones (the authors' deep-stem ResNet-50).
DEFAULT_WEIGHTS = ("vgg16_bn", "resnet50_v2")

#: The ImageNet weights of each ``weights.resnet50`` choice (VGG16 has one: vgg16_bn).
RESNET50_WEIGHTS = {"resnet50_v2": "resnet50_v2", "torchvision": "resnet50_torchvision"}


def weights_artifact(backbone: str, resnet50: str = "resnet50_v2") -> str:
    """The download holding a backbone's ImageNet weights (``resnet50``: the config's weights.resnet50)."""
    if backbone == "vgg16":
        return "vgg16_bn"
    if backbone != "resnet50" or resnet50 not in RESNET50_WEIGHTS:
        raise ValueError(f"no ImageNet weights for backbone {backbone!r} (weights.resnet50 {resnet50!r}); "
                         f"backbones: resnet50 ({sorted(RESNET50_WEIGHTS)}), vgg16")
    return RESNET50_WEIGHTS[resnet50]


__all__ = ["DEFAULT_WEIGHTS", "IMAGENET_WEIGHTS", "RESNET50_WEIGHTS", "weights_artifact"]
