"""PSPNet, BAM's base learner (BAM ``model/PSPNet.py``; docs/sources.md#bam), trained in its own stage.

A plain semantic-segmentation model over the base classes: backbone ``layer0..layer4`` -> ``ppm`` (bins 1, 2, 3, 6;
each 1x1 conv to C4/len(bins) + BN + ReLU) -> ``cls`` (3x3 conv to ``cls_dim`` + BN + ReLU + Dropout2d(0.1) + 1x1
conv to 1 + num_base_classes) -> logits upsampled to the input size.

Labels: stage 1 trains on *base labels*: base class -> its index in ``base_classes`` + 1, every other class
(novel) -> 0, 255 kept (BAM relabels novel pixels as background and keeps those images). ``loss(logits,
raw_label)`` does this mapping from the raw class ids; ``base_labels(raw_label)`` exposes it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..backbones import build_backbone
from .common import PPM, STAGES, base_label_table, cross_entropy, resize

PPM_BINS = (1, 2, 3, 6)


def resolve_base_classes(num_base_classes: int | None, base_classes: Sequence[int] | None) -> tuple[int, tuple | None]:
    """Both given: they must agree. Only ``base_classes``: its length. Only the count: no label mapping."""
    if base_classes is not None:
        base_classes = tuple(int(c) for c in base_classes)
        if num_base_classes is not None and int(num_base_classes) != len(base_classes):
            raise ValueError(f"num_base_classes={num_base_classes} but base_classes has {len(base_classes)} "
                             f"entries: {base_classes}")
        return len(base_classes), base_classes
    if num_base_classes is None or int(num_base_classes) < 1:
        raise ValueError("give base_classes (the fold's base class ids, in order) or num_base_classes >= 1")
    return int(num_base_classes), None


class BaseLabelMixin:
    """Raw class id -> base label through a non-persistent lookup buffer (not part of the state dict)."""

    def _init_base_labels(self, base_classes) -> None:
        self.base_classes = base_classes
        if base_classes is not None:
            self.register_buffer("_base_lut", base_label_table(base_classes), persistent=False)
        else:
            self._base_lut = None

    def base_labels(self, raw_label: torch.Tensor) -> torch.Tensor:
        if self._base_lut is None:
            raise ValueError(f"{type(self).__name__} was built with num_base_classes only; pass base_classes (the "
                             "fold's base class ids) to map raw labels to base labels")
        # checked on the device without waiting for it (on the CPU it raises at once; on a GPU at a later launch)
        top = len(self._base_lut) - 1
        torch._assert_async(((raw_label >= 0) & (raw_label <= top)).all(), f"raw labels must be class ids in 0..{top}")
        return self._base_lut.to(raw_label.device)[raw_label.long()]


class PSPNet(BaseLabelMixin, nn.Module):
    def __init__(self, backbone: str = "resnet50", num_base_classes: int | None = None,
                 base_classes: Sequence[int] | None = None, width: float = 1.0, depths=None, stem: str = "deep",
                 dilation: str = "pfenet", ppm_bins: Sequence[int] = PPM_BINS, cls_dim: int = 512,
                 vgg_stride: int = 16):
        super().__init__()
        self.num_base_classes, base_classes = resolve_base_classes(num_base_classes, base_classes)
        net = build_backbone(backbone, width=width, depths=depths, stem=stem, dilation=dilation,
                             vgg_stride=vgg_stride)
        for name in STAGES:
            setattr(self, name, getattr(net, name))
        self.channels = dict(net.channels)
        self.backbone_name = backbone
        self.backbone_config = {"backbone": backbone, "width": width, "depths": depths, "stem": stem,
                                "dilation": dilation, "vgg_stride": vgg_stride}
        fea_dim = self.channels["layer4"]
        red = fea_dim // len(ppm_bins)
        self.ppm = PPM(fea_dim, red, ppm_bins)
        self.cls = nn.Sequential(
            nn.Conv2d(fea_dim + red * len(ppm_bins), cls_dim, 3, padding=1, bias=False), nn.BatchNorm2d(cls_dim),
            nn.ReLU(inplace=True), nn.Dropout2d(p=0.1), nn.Conv2d(cls_dim, self.num_base_classes + 1, 1))
        self.ppm_bins, self.cls_dim = tuple(ppm_bins), int(cls_dim)
        self._init_base_labels(base_classes)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for name in STAGES:
            x = getattr(self, name)(x)
        return x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1 + num_base_classes, H, W) at the image size."""
        return resize(self.cls(self.ppm(self.encode(image))), image.shape[-2:])

    def loss(self, logits: torch.Tensor, raw_label: torch.Tensor):
        """CE on base labels derived from raw class ids (e.g. a batch's ``query_label_full``)."""
        main = cross_entropy(logits, self.base_labels(raw_label))
        return main, {"main": main.detach()}

    def head_modules(self) -> list[nn.Module]:
        return [self.ppm, self.cls]


__all__ = ["PSPNet", "PPM_BINS", "resolve_base_classes", "BaseLabelMixin"]
