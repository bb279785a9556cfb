"""ResNet-50 backbones exposing ``layer0..layer4`` as in PFENet, BAM and the authors' SVF code.

Two stems:
  * ``deep`` (default): the PSPNet/semseg "v2" stem, three 3x3 convs (3->64 s2, 64->64, 64->128) and a max-pool,
    packed as ``layer0 = Sequential(conv1, bn1, relu1, conv2, bn2, relu2, conv3, bn3, relu3, maxpool)`` so that the
    state-dict keys are ``layer0.0.weight`` ... exactly like the authors' models.
  * ``standard``: torchvision's 7x7 stem (``layer0 = Sequential(conv1, bn1, relu, maxpool)``), for torchvision weights.

Two output-stride-8 dilation patterns:
  * ``pfenet``: PFENet/BAM. Every ``conv2`` of layer3 gets dilation 2, of layer4 dilation 4, stride 1 everywhere
    in those stages (including ``downsample.0``).
  * ``torchvision``: the authors' SVF code (torchvision ``replace_stride_with_dilation=[False, True, True]``): the
    first block of layer3 keeps dilation 1, the first block of layer4 has dilation 2.

``width`` scales every channel count and ``depths`` sets the blocks per stage, for the demo's tiny backbones; the
module names stay the same, so decomposition, policies and layer names (e.g. ``layer3.5.conv2``) work unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import STAGES, StagedBackbone

RESNET50_DEPTHS = (3, 4, 6, 3)
DILATION_PATTERNS = ("pfenet", "torchvision")
STEMS = ("deep", "standard")


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Bottleneck(nn.Module):
    """torchvision-style bottleneck (stride on the 3x3 conv), names conv1..3 / bn1..3 / downsample."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(inplanes: int, planes: int, blocks: int, stride: int, first_dilation: int, dilation: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
    layers = [Bottleneck(inplanes, planes, stride, first_dilation, downsample)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetBackbone(StagedBackbone):
    """Dilated (output stride 8) ResNet with bottleneck blocks, split into ``layer0..layer4``."""

    def __init__(self, depths: Sequence[int] = RESNET50_DEPTHS, width: float = 1.0, stem: str = "deep",
                 dilation: str = "pfenet"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if dilation not in DILATION_PATTERNS:
            raise ValueError(f"dilation must be one of {DILATION_PATTERNS}, got {dilation!r}")
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths must be 4 positive block counts, got {depths!r}")
        self.depths, self.width, self.stem, self.dilation = tuple(depths), width, stem, dilation
        c64, c128 = _scaled(64, width), _scaled(128, width)
        if stem == "deep":
            self.layer0 = nn.Sequential(
                nn.Conv2d(3, c64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c64), nn.ReLU(inplace=True),
                nn.Conv2d(c64, c64, 3, padding=1, bias=False), nn.BatchNorm2d(c64), nn.ReLU(inplace=True),
                nn.Conv2d(c64, c128, 3, padding=1, bias=False), nn.BatchNorm2d(c128), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            inplanes = c128
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(3, c64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(c64), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            inplanes = c64
        planes = [_scaled(p, width) for p in (64, 128, 256, 512)]
        # (stride, first-block dilation, other-block dilation) per stage for layer3/layer4
        if dilation == "pfenet":
            l3, l4 = (1, 2, 2), (1, 4, 4)
        else:
            l3, l4 = (1, 1, 2), (1, 2, 4)
        self.layer1 = _stage(inplanes, planes[0], depths[0], 1, 1, 1)
        self.layer2 = _stage(planes[0] * 4, planes[1], depths[1], 2, 1, 1)
        self.layer3 = _stage(planes[1] * 4, planes[2], depths[2], *l3)
        self.layer4 = _stage(planes[2] * 4, planes[3], depths[3], *l4)
        self.channels = dict(zip(STAGES, (inplanes, *(p * 4 for p in planes))))
        self.init_weights()


def resnet50(width: float = 1.0, depths: Sequence[int] = RESNET50_DEPTHS, stem: str = "deep",
             dilation: str = "pfenet") -> ResNetBackbone:
    return ResNetBackbone(depths=depths, width=width, stem=stem, dilation=dilation)
