"""Backbones exposing ``layer0..layer4`` (and ``channels``); weights loading lives in :mod:`svf.backbones.weights`."""
from __future__ import annotations

from torch import nn

from .resnet import ResNetBackbone, resnet50
from .vgg import VGGBackbone, vgg16_bn

BACKBONES = ("resnet50", "vgg16")


def build_backbone(name: str, width: float = 1.0, depths=None, stem: str = "deep", dilation: str = "pfenet",
                   vgg_stride: int = 16) -> nn.Module:
    """Build a randomly initialised backbone by name (``resnet50`` or ``vgg16``, i.e. VGG16-BN); ``vgg_stride``
    is VGG's output stride (16 as the papers, 8 for the CPU demo's 64 px inputs)."""
    if name == "resnet50":
        kwargs = {} if depths is None else {"depths": tuple(depths)}
        return resnet50(width=width, stem=stem, dilation=dilation, **kwargs)
    if name == "vgg16":
        if depths is not None:
            raise ValueError("vgg16 has a fixed depth; 'depths' applies to resnet50 only")
        return vgg16_bn(width=width, output_stride=vgg_stride)
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


__all__ = ["BACKBONES", "build_backbone", "ResNetBackbone", "VGGBackbone", "resnet50", "vgg16_bn"]
