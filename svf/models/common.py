"""Blocks shared by the few-shot models (baseline, PFENet, BAM) and the PSPNet base learner.

Module and attribute names follow the authors' code (``down_query``, ``ASPP_meta.layer6_2``, ``ppm.features.0`` ...)
so that their state dicts map onto ours key for key (see :mod:`svf.models.checkpoints`).
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import build_backbone
from ..backbones.base import STAGES
from ..labels import IGNORE_LABEL

# Weighted_GAP's area epsilon and the prior's cosine epsilon in PFENet/BAM/SVF code.
GAP_EPS = 5e-4
COSINE_EPS = 1e-7


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (the only interpolation these code bases use)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def reduce_block(in_dim: int, out_dim: int) -> nn.Sequential:
    """``down_query`` / ``down_supp``: 1x1 conv (no bias) + ReLU + Dropout2d(0.5)."""
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, bias=False), nn.ReLU(inplace=True), nn.Dropout2d(p=0.5))


def conv_relu(in_dim: int, out_dim: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, kernel, padding=kernel // 2, bias=False), nn.ReLU(inplace=True))


def double_conv3x3(dim: int) -> nn.Sequential:
    """``res2`` / ``beta_conv``: two (3x3 conv, no bias, + ReLU), used residually by the callers."""
    return nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                         nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.ReLU(inplace=True))


def seg_classifier(dim: int, classes: int) -> nn.Sequential:
    """``cls`` / ``cls_meta`` / ``inner_cls``: 3x3 conv + ReLU + Dropout2d(0.1) + 1x1 conv (with bias)."""
    return nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                         nn.Dropout2d(p=0.1), nn.Conv2d(dim, classes, 1))


class ASPP(nn.Module):
    """BAM's ASPP (``ASPP_meta``): image pooling, 1x1, and 3x3 with dilation 6/12/18; convs with bias + ReLU."""

    def __init__(self, dim: int = 256):
        super().__init__()
        specs = [(1, 1), (1, 1), (3, 6), (3, 12), (3, 18)]  # (kernel, dilation); layer6_0 is the pooled branch
        for i, (k, d) in enumerate(specs):
            pad = d if k == 3 else 0
            setattr(self, f"layer6_{i}", nn.Sequential(nn.Conv2d(dim, dim, k, padding=pad, dilation=d, bias=True),
                                                      nn.ReLU()))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # as BAM; biases keep PyTorch's default init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.layer6_0(x.mean((2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return torch.cat([pooled] + [getattr(self, f"layer6_{i}")(x) for i in range(1, 5)], 1)


class PPM(nn.Module):
    """PSPNet pyramid pooling: per bin adaptive avg-pool -> 1x1 conv (no bias) -> BN -> ReLU, upsampled, concat."""

    def __init__(self, in_dim: int, reduction_dim: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_dim, reduction_dim, 1, bias=False),
                          nn.BatchNorm2d(reduction_dim), nn.ReLU(inplace=True))
            for b in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] + [resize(f(x), x.shape[-2:]) for f in self.features], 1)


def weighted_gap(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked average pooling (``Weighted_GAP``): sum(f*m) / (sum(m) + 5e-4), shape (B, C, 1, 1)."""
    return (feat * mask).sum((2, 3), keepdim=True) / (mask.sum((2, 3), keepdim=True) + GAP_EPS)


def _float32(fn):
    """Run ``fn`` in float32 outside autocast: Gram sums and cosine products over thousands of positions can
    overflow float16 (the authors trained in float32)."""
    @functools.wraps(fn)
    def wrapper(*tensors, **kwargs):
        device_type = tensors[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*(t.float() if torch.is_tensor(t) and t.dtype in (torch.float16, torch.bfloat16) else t
                        for t in tensors), **kwargs)
    return wrapper


@_float32
def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """Channel-wise cosine-similarity Gram matrix (B, C, C) of a (B, C, H, W) feature (BAM's scene factor)."""
    f = feat.flatten(2)
    norm = f.norm(dim=2, keepdim=True)
    return torch.bmm(f, f.transpose(1, 2)) / (torch.bmm(norm, norm.transpose(1, 2)) + COSINE_EPS)


def gram_distance(query_low: torch.Tensor, support_low: torch.Tensor) -> torch.Tensor:
    """psi = ||G_q - G_s||_F / ||1_{CxC}||_F, shape (B,)."""
    diff = gram_matrix(query_low) - gram_matrix(support_low)
    c = diff.shape[-1]
    return diff.flatten(1).norm(dim=1) / float(c)


@_float32
def prior_mask(query_feat4: torch.Tensor, support_feat4: torch.Tensor, support_mask: torch.Tensor,
               out_size: Sequence[int]) -> torch.Tensor:
    """PFENet's training-free prior (B, 1, *out_size).

    ``support_feat4`` is the layer4 feature of (support layer3 * mask); it is masked again with ``support_mask``
    (the binary support mask at image resolution) resized to its own size. For every query position: the max cosine
    similarity over support positions, then min-max normalised per image and resized to ``out_size``. The original
    code assumes square maps; this works for any (h, w).
    """
    b, c, hq, wq = query_feat4.shape
    s = support_feat4 * resize(support_mask, support_feat4.shape[-2:])
    q = query_feat4.flatten(2)                      # (B, C, Nq)
    s = s.flatten(2).transpose(1, 2)                # (B, Ns, C)
    denom = torch.bmm(s.norm(dim=2, keepdim=True), q.norm(dim=1, keepdim=True)) + COSINE_EPS
    sim = (torch.bmm(s, q) / denom).max(1)[0]       # (B, Nq)
    lo, hi = sim.min(1, keepdim=True)[0], sim.max(1, keepdim=True)[0]
    sim = (sim - lo) / (hi - lo + COSINE_EPS)
    return resize(sim.view(b, 1, hq, wq), out_size)


def mid_level(feat2: torch.Tensor, feat3: torch.Tensor) -> torch.Tensor:
    """concat(layer3, layer2 resized to layer3's size): 1536 channels for R50, 768 for VGG (layer2 is /8 there)."""
    return torch.cat([feat3, resize(feat2, feat3.shape[-2:])], 1)


def base_label_table(base_classes: Sequence[int], size: int = 256) -> torch.Tensor:
    """Lookup table raw class id -> BAM base label: base class -> its index in ``base_classes`` + 1, other
    classes -> 0, 255 kept."""
    ids = [int(c) for c in base_classes]
    if len(set(ids)) != len(ids) or any(c <= 0 or c >= IGNORE_LABEL for c in ids):
        raise ValueError(f"base_classes must be distinct class ids in 1..254, got {ids}")
    table = torch.zeros(size, dtype=torch.long)
    table[torch.tensor(ids, dtype=torch.long)] = torch.arange(1, len(ids) + 1)
    table[IGNORE_LABEL] = IGNORE_LABEL
    return table


def check_label(logits: torch.Tensor, label: torch.Tensor, key: str) -> torch.Tensor:
    if label.dim() != 3 or tuple(label.shape) != (logits.shape[0], *logits.shape[-2:]):
        raise ValueError(f"batch[{key!r}] has shape {tuple(label.shape)}, expected "
                         f"{(logits.shape[0], *logits.shape[-2:])} to match the logits")
    return label.long()


def cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, label, ignore_index=IGNORE_LABEL)


def batch_item(batch: dict, key: str) -> torch.Tensor:
    if key not in batch:
        raise KeyError(f"batch has no {key!r} (keys: {sorted(batch)})")
    return batch[key]


class FewShotModel(nn.Module):
    """Backbone stages as direct attributes ``layer0..layer4`` plus the feature plumbing all three methods share.

    Subclasses build their head and implement ``forward`` and ``loss``. ``frozen_modules`` names children outside
    layer0..4 that never train (their parameters get ``requires_grad=False`` and ``head_modules`` skips them).
    """

    frozen_modules: tuple[str, ...] = ()

    def __init__(self, backbone: str, shot: int, width: float, depths, stem: str, dilation: str,
                 reduce_dim: int, prior_grad: bool, vgg_stride: int = 16):
        super().__init__()
        if int(shot) < 1:
            raise ValueError(f"shot must be >= 1, got {shot!r}")
        if int(reduce_dim) < 1:
            raise ValueError(f"reduce_dim must be >= 1, got {reduce_dim!r}")
        self.backbone_name = backbone
        self.shot = int(shot)
        self.reduce_dim = int(reduce_dim)
        self.prior_grad = bool(prior_grad)
        net = build_backbone(backbone, width=width, depths=depths, stem=stem, dilation=dilation,
                             vgg_stride=vgg_stride)
        self.channels = dict(net.channels)
        for name in STAGES:
            setattr(self, name, getattr(net, name))
        self.backbone_config = {"backbone": backbone, "width": width, "depths": depths, "stem": stem,
                                "dilation": dilation, "vgg_stride": vgg_stride}

    @property
    def mid_dim(self) -> int:
        return self.channels["layer2"] + self.channels["layer3"]

    def head_modules(self) -> list[nn.Module]:
        """Modules trained at the head learning rate: every child outside layer0..4 and the frozen branch that
        holds a trainable parameter."""
        skip = set(STAGES) | set(self.frozen_modules)
        return [m for name, m in self.named_children()
                if name not in skip and any(p.requires_grad for p in m.parameters())]

    def freeze_frozen_modules(self) -> None:
        for name in self.frozen_modules:
            for p in getattr(self, name).parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen branch also keeps frozen BN statistics (the authors' fix_bn); its dropout follows `mode` as theirs.
        for name in self.frozen_modules:
            for m in getattr(self, name).modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _check_inputs(self, query: torch.Tensor, supports: torch.Tensor, support_labels: torch.Tensor) -> None:
        if query.dim() != 4:
            raise ValueError(f"query must be (B, 3, H, W), got shape {tuple(query.shape)}")
        b = query.shape[0]
        if supports.dim() != 5 or supports.shape[0] != b or supports.shape[1] != self.shot:
            raise ValueError(f"supports must be (B={b}, K={self.shot}, 3, H, W), got {tuple(supports.shape)}")
        if support_labels.shape[:2] != supports.shape[:2] or support_labels.shape[-2:] != supports.shape[-2:]:
            raise ValueError(f"support_labels must be (B, K, H, W) matching supports {tuple(supports.shape)}, "
                             f"got {tuple(support_labels.shape)}")

    def _layer4(self, x: torch.Tensor) -> torch.Tensor:
        # prior_grad=False: PFENet's torch.no_grad around the layer4 features that only feed the prior.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.prior_grad):
            return self.layer4(x)

    def query_features(self, query: torch.Tensor) -> list[torch.Tensor]:
        f0 = self.layer0(query)
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f0, f1, f2, f3, self._layer4(f3)]

    def support_features(self, supports: torch.Tensor, support_labels: torch.Tensor):
        """Per shot (looped like the authors, so BN-in-train-mode statistics are per shot as theirs):
        layer2, layer3, mask at layer3 size, layer4(layer3 * mask) and the full-size binary mask."""
        out = []
        for k in range(supports.shape[1]):
            mask = (support_labels[:, k] == 1).float().unsqueeze(1)
            f2 = self.layer2(self.layer1(self.layer0(supports[:, k])))
            f3 = self.layer3(f2)
            mask3 = resize(mask, f3.shape[-2:])
            out.append({"feat2": f2, "feat3": f3, "mask3": mask3, "feat4": self._layer4(f3 * mask3), "mask": mask})
        return out

    def backbone_inputs(self, query: torch.Tensor, supports: torch.Tensor, support_labels: torch.Tensor) -> dict:
        """What the head reads from the backbone and the parameter-free steps after it: query layer2/3 (``q2``,
        ``q3``), per shot layer2/3 and the mask at layer3 size (``s_feat2``, ``s_feat3``, ``s_mask3``: (B, K, ...))
        and the priors (B, K, 1, h, w). ``forward`` = ``head(backbone_inputs(...))``; with a frozen backbone these
        never change for a fixed episode, so validation caches them (svf/engine/tasks/feature_cache.py)."""
        self._check_inputs(query, supports, support_labels)
        q = self.query_features(query)
        shots = self.support_features(supports, support_labels)
        size3 = q[3].shape[-2:]
        inputs = {"q2": q[2], "q3": q[3], "q4": q[4],
                  "s_feat2": torch.stack([s["feat2"] for s in shots], 1),
                  "s_feat3": torch.stack([s["feat3"] for s in shots], 1),
                  "s_mask3": torch.stack([s["mask3"] for s in shots], 1),
                  "priors": torch.stack([prior_mask(q[4], s["feat4"], s["mask"], size3) for s in shots], 1)}
        return self.more_backbone_inputs(inputs, query)

    def more_backbone_inputs(self, inputs: dict, query: torch.Tensor) -> dict:
        """Method-specific frozen inputs (BAM: scene distances and the base learner); ``q4`` is dropped here when
        the head does not read it, so a cache does not hold it."""
        inputs.pop("q4")
        return inputs

    def head(self, inputs: dict, out_size, class_id: torch.Tensor | None = None) -> dict:
        raise NotImplementedError

    def forward(self, query: torch.Tensor, supports: torch.Tensor, support_labels: torch.Tensor,
                class_id: torch.Tensor | None = None) -> dict:
        return self.head(self.backbone_inputs(query, supports, support_labels), query.shape[-2:], class_id)

    def shot_prototypes(self, inputs: dict) -> torch.Tensor:
        """Masked-average prototypes of the reduced support features, (B, K, C, 1, 1)."""
        return torch.stack([weighted_gap(self.down_supp(mid_level(inputs["s_feat2"][:, k], inputs["s_feat3"][:, k])),
                                         inputs["s_mask3"][:, k]) for k in range(inputs["s_feat3"].shape[1])], 1)
