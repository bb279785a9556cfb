"""The authors' "baseline" (SVF repo ``model/aspp.py``): BAM's meta learner alone on an ImageNet backbone.

Pipeline (docs/sources.md#the-baseline): mid-level features concat(layer3, layer2) -> ``down_query`` / ``down_supp``;
support prototype by masked average pooling; PFENet prior from layer4; concat(query, prototype, prior) ->
``init_merge`` -> ``ASPP_meta`` -> ``res1_meta`` -> ``res2_meta`` (residual) -> ``cls_meta`` -> 2 classes,
upsampled to the query size. One cross-entropy loss.

Quirks of the authors' code, as options:
  * ``optimize_down_query`` (default False): aspp.py never gives ``down_query`` to the optimizer, so it keeps its
    random initialisation. We express that as ``requires_grad=False`` and leaving it out of ``head_modules()``.
  * ``kshot_reduce`` (default "sum"): aspp.py *sums* the K prototypes and K priors (weights all ones);
    "mean" averages them as PFENet does.
"""
from __future__ import annotations

import torch

from .common import (ASPP, FewShotModel, batch_item, check_label, conv_relu, cross_entropy, double_conv3x3,
                     mid_level, reduce_block, resize, seg_classifier)

KSHOT_REDUCTIONS = ("sum", "mean")


class MetaLearnerModel(FewShotModel):
    """BAM's meta learner (shared by the baseline and BAM); ``_shot_weights`` decides how K shots combine."""

    def __init__(self, backbone: str, shot: int, width: float, depths, stem: str, dilation: str, reduce_dim: int,
                 prior_grad: bool, vgg_stride: int = 16):
        super().__init__(backbone, shot, width, depths, stem, dilation, reduce_dim, prior_grad, vgg_stride)
        d = self.reduce_dim
        self.down_query = reduce_block(self.mid_dim, d)
        self.down_supp = reduce_block(self.mid_dim, d)
        self.init_merge = conv_relu(2 * d + 1, d)
        self.ASPP_meta = ASPP(d)
        self.res1_meta = conv_relu(5 * d, d)
        self.res2_meta = double_conv3x3(d)
        self.cls_meta = seg_classifier(d, 2)

    def _shot_weights(self, inputs: dict) -> tuple[torch.Tensor, dict]:
        """(B, K) weights for prototypes and priors, plus extra outputs."""
        raise NotImplementedError

    def meta_head(self, inputs: dict):
        """Meta-learner logits at the layer3 resolution and the shot-weighting extras."""
        query_feat = self.down_query(mid_level(inputs["q2"], inputs["q3"]))
        protos = self.shot_prototypes(inputs)                                        # (B, K, C, 1, 1)
        weights, extras = self._shot_weights(inputs)
        w = weights[:, :, None, None, None]
        proto = (w * protos).sum(1)
        prior = (w * inputs["priors"]).sum(1)
        merge = self.init_merge(torch.cat([query_feat, proto.expand_as(query_feat), prior], 1))
        meta = self.res1_meta(self.ASPP_meta(merge))
        meta = self.res2_meta(meta) + meta
        return self.cls_meta(meta), extras


class Baseline(MetaLearnerModel):
    def __init__(self, backbone: str = "resnet50", shot: int = 1, width: float = 1.0, depths=None,
                 stem: str = "deep", dilation: str = "torchvision", reduce_dim: int = 256,
                 optimize_down_query: bool = False, kshot_reduce: str = "sum", prior_grad: bool = True,
                 vgg_stride: int = 16):
        if kshot_reduce not in KSHOT_REDUCTIONS:
            raise ValueError(f"kshot_reduce must be one of {KSHOT_REDUCTIONS}, got {kshot_reduce!r}")
        super().__init__(backbone, shot, width, depths, stem, dilation, reduce_dim, prior_grad, vgg_stride)
        self.kshot_reduce = kshot_reduce
        self.optimize_down_query = bool(optimize_down_query)
        if not self.optimize_down_query:
            self.frozen_modules = ("down_query",)
            self.freeze_frozen_modules()

    def _shot_weights(self, inputs: dict):
        b, k = inputs["priors"].shape[:2]
        value = 1.0 if self.kshot_reduce == "sum" else 1.0 / k
        return inputs["priors"].new_full((b, k), value), {}

    def head(self, inputs: dict, out_size, class_id: torch.Tensor | None = None) -> dict:
        meta, _ = self.meta_head(inputs)
        return {"logits": resize(meta, out_size)}

    def loss(self, outputs: dict, batch: dict):
        logits = outputs["logits"]
        main = cross_entropy(logits, check_label(logits, batch_item(batch, "query_label"), "query_label"))
        return main, {"main": main.detach()}


__all__ = ["Baseline", "MetaLearnerModel", "KSHOT_REDUCTIONS"]
