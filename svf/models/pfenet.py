"""PFENet (TPAMI 2020) as in the SVF repo's ``model/pfenet.py`` (= PFENet's ``model/PFENet.py`` without the
``torch.no_grad`` around the backbone).

Mid-level features -> ``down_query``/``down_supp``; prototype = masked average pooling, averaged over K shots;
prior from layer4, averaged over K shots; Feature Enrichment Module over ``bins`` (``init_merge``, ``alpha_conv``,
``beta_conv``, ``inner_cls`` per scale) -> ``res1`` -> ``res2`` (residual) -> ``cls``.
Loss: CE(main) + aux_weight * mean over scales of CE(inner_cls upsampled to the label size) (docs/sources.md#pfenet).

``bins``: integers (pixels; the SVF repo hard-codes [60, 30, 15, 8] for PASCAL and COCO) or fractions <= 1 of the
query feature size (PFENet's COCO configs: [1.0, 0.5, 0.25, 0.125]). An integer bin is pooled to bin x bin with
adaptive average pooling exactly as PFENet does, also when it is larger than the feature map (adaptive pooling then
replicates feature pixels, e.g. 60x60 from an 8x8 map of a 64x64 demo input); each scale's output is resized back
to the feature size, so any input size works. A fraction f gives (max(1, int(f*h)), max(1, int(f*w))): for square
maps this is PFENet's int(f*h); the clamp to 1 only matters for tiny maps.

``prior_grad`` (default True, the SVF code): gradients reach the backbone (its singular values) through the layer4
features behind the prior; False computes them under ``torch.no_grad`` as original PFENet.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .common import (FewShotModel, batch_item, check_label, conv_relu, cross_entropy, double_conv3x3, mid_level,
                     reduce_block, resize, seg_classifier)

PASCAL_BINS = (60, 30, 15, 8)
COCO_BINS = (1.0, 0.5, 0.25, 0.125)


def _check_bins(bins) -> tuple:
    bins = tuple(bins)
    if not bins:
        raise ValueError("bins must not be empty")
    for b in bins:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0:
            raise ValueError(f"bins must be positive ints (pixels) or fractions <= 1.0, got {bins!r}")
        if isinstance(b, float) and b > 1.0 and not b.is_integer():
            raise ValueError(f"bin {b!r}: a float bin must be a fraction <= 1.0 of the feature size")
    return bins


def bin_size(b, h: int, w: int) -> tuple[int, int]:
    """PFENet's rule: b <= 1 is a fraction of the feature size, otherwise a b x b grid."""
    if b <= 1.0:
        return max(1, int(h * b)), max(1, int(w * b))
    return int(b), int(b)


class PFENet(FewShotModel):
    def __init__(self, backbone: str = "resnet50", shot: int = 1, width: float = 1.0, depths=None,
                 stem: str = "deep", dilation: str = "torchvision", reduce_dim: int = 256,
                 bins: Sequence[float] = PASCAL_BINS, aux_weight: float = 1.0, prior_grad: bool = True,
                 vgg_stride: int = 16):
        super().__init__(backbone, shot, width, depths, stem, dilation, reduce_dim, prior_grad, vgg_stride)
        self.bins = _check_bins(bins)
        self.aux_weight = float(aux_weight)
        d, n = self.reduce_dim, len(self.bins)
        self.down_query = reduce_block(self.mid_dim, d)
        self.down_supp = reduce_block(self.mid_dim, d)
        self.init_merge = nn.ModuleList(conv_relu(2 * d + 1, d) for _ in range(n))
        self.alpha_conv = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * d, d, 1, bias=False), nn.ReLU())
                                        for _ in range(n - 1))
        self.beta_conv = nn.ModuleList(double_conv3x3(d) for _ in range(n))
        self.inner_cls = nn.ModuleList(seg_classifier(d, 2) for _ in range(n))
        self.res1 = conv_relu(n * d, d)
        self.res2 = double_conv3x3(d)
        self.cls = seg_classifier(d, 2)

    def head(self, inputs: dict, out_size, class_id: torch.Tensor | None = None) -> dict:
        h, w = inputs["q3"].shape[-2:]
        query_feat = self.down_query(mid_level(inputs["q2"], inputs["q3"]))
        proto = self.shot_prototypes(inputs).mean(1)
        prior = inputs["priors"].mean(1)

        pyramid, aux = [], []
        for idx, b in enumerate(self.bins):
            size = bin_size(b, h, w)
            merged = self.init_merge[idx](torch.cat([F.adaptive_avg_pool2d(query_feat, size),
                                                     proto.expand(-1, -1, *size), resize(prior, size)], 1))
            if idx > 0:
                previous = resize(pyramid[-1], size)
                merged = self.alpha_conv[idx - 1](torch.cat([merged, previous], 1)) + merged
            merged = self.beta_conv[idx](merged) + merged
            aux.append(self.inner_cls[idx](merged))
            pyramid.append(resize(merged, (h, w)))
        feat = self.res1(torch.cat(pyramid, 1))
        feat = self.res2(feat) + feat
        return {"logits": resize(self.cls(feat), out_size), "aux_logits": aux}

    def loss(self, outputs: dict, batch: dict):
        logits = outputs["logits"]
        label = check_label(logits, batch_item(batch, "query_label"), "query_label")
        main = cross_entropy(logits, label)
        aux = torch.stack([cross_entropy(resize(a, label.shape[-2:]), label) for a in outputs["aux_logits"]]).mean()
        total = main + self.aux_weight * aux
        return total, {"main": main.detach(), "aux": aux.detach()}


__all__ = ["PFENet", "PASCAL_BINS", "COCO_BINS", "bin_size"]
