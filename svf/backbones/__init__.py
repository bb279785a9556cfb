"""Backbones exposing ``layer0..layer4`` (and ``channels``); weights loading lives in :mod:`svf.backbones.weights`,
where their ImageNet weights come from in :mod:`svf.backbones.imagenet`.

The package itself imports no torch (its modules do, when first used): the Snakefile reads
:mod:`svf.backbones.imagenet` while it builds the DAG.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

BACKBONES = ("resnet50", "vgg16")
#: The backbone classes and constructors, imported on first use (with torch).
_LAZY = {"ResNetBackbone": "resnet", "resnet50": "resnet", "VGGBackbone": "vgg", "vgg16_bn": "vgg"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_backbone(name: str, width: float = 1.0, depths=None, stem: str = "deep", dilation: str = "pfenet",
                   vgg_stride: int = 16) -> nn.Module:
    """Build a randomly initialised backbone by name (``resnet50`` or ``vgg16``, i.e. VGG16-BN); ``vgg_stride``
    is VGG's output stride (16 as the papers, 8 for the CPU demo's 64 px inputs)."""
    if name == "resnet50":
        from .resnet import resnet50

        kwargs = {} if depths is None else {"depths": tuple(depths)}
        return resnet50(width=width, stem=stem, dilation=dilation, **kwargs)
    if name == "vgg16":
        from .vgg import vgg16_bn

        if depths is not None:
            raise ValueError("vgg16 has a fixed depth; 'depths' applies to resnet50 only")
        return vgg16_bn(width=width, output_stride=vgg_stride)
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


__all__ = ["BACKBONES", "build_backbone", "ResNetBackbone", "VGGBackbone", "resnet50", "vgg16_bn"]
