"""BAM (CVPR 2022) as in the SVF repo's ``model/BAM.py`` (docs/sources.md#bam).

Modules, named as the authors' (so their state dicts load key for key):
  * ``layer0..layer4``: the meta-learner backbone, a copy of the trained PSPNet backbone. With SVF it is this copy
    that gets decomposed (the policy decomposes layer0..4 in place).
  * ``layer0p..layer4p``: the base learner's own, untouched backbone copy (frozen, always run under no_grad).
    The authors' BAM.py creates these attributes with and without SVF; without SVF they alias the same modules as
    layer0..4, with SVF layer0..4 are replaced by decomposed copies. We always keep two independent copies, so
    decomposing or fine-tuning layer0..4 can never touch the base learner (with a frozen backbone and no SVF both
    give identical outputs). Original BAM has no ``layer*p`` and feeds the base learner from layer4; its
    checkpoints load by copying layer* into layer*p (see checkpoints.py).
  * ``learner_base = Sequential(ppm, cls)``: the PSPNet head, frozen.
  * the meta learner (as the baseline; ``down_query`` *is* trained here), ``gram_merge`` and ``cls_merge``
    (1x1 convs 2->1, no bias, initialised to [1, 0]) and, for K > 1, ``kshot_rw``.

Forward: meta logits; base logits from layer4p; scene factor psi from the layer2 Gram matrices; meta bg/fg
adjusted by ``gram_merge``; base_map = sum of the non-background base probabilities (in training, without the
episode's own class, which is a base class: this needs ``class_id``); final bg = ``cls_merge``([bg, base_map]).
Loss: CE(final) + CE(meta) + CE(base, base labels of ``query_label_full``); the last term trains nothing.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn

from ..backbones.weights import read_state_dict
from .baseline import MetaLearnerModel
from .common import STAGES, batch_item, check_label, cross_entropy, gram_distance, resize
from .pspnet import PPM_BINS, PSPNet, BaseLabelMixin, resolve_base_classes

BASE_STAGES = tuple(f"{s}p" for s in STAGES)


def _merge_conv() -> nn.Conv2d:
    conv = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    return conv


class BAM(BaseLabelMixin, MetaLearnerModel):
    frozen_modules = BASE_STAGES + ("learner_base",)

    def __init__(self, backbone: str = "resnet50", shot: int = 1, num_base_classes: int | None = None,
                 base_classes: Sequence[int] | None = None, width: float = 1.0, depths=None, stem: str = "deep",
                 dilation: str = "pfenet", reduce_dim: int = 256, kshot_trans_dim: int = 2,
                 ppm_bins: Sequence[int] = PPM_BINS, base_cls_dim: int = 512, prior_grad: bool = True,
                 base_learner: "PSPNet | Mapping[str, torch.Tensor] | None" = None, vgg_stride: int = 16):
        super().__init__(backbone, shot, width, depths, stem, dilation, reduce_dim, prior_grad, vgg_stride)
        self.num_base_classes, base_classes = resolve_base_classes(num_base_classes, base_classes)
        base = PSPNet(backbone, self.num_base_classes, None, width=width, depths=depths, stem=stem,
                      dilation=dilation, ppm_bins=ppm_bins, cls_dim=base_cls_dim, vgg_stride=vgg_stride)
        self.base_config = {"ppm_bins": tuple(ppm_bins), "cls_dim": int(base_cls_dim)}
        for name in STAGES:
            setattr(self, name + "p", copy.deepcopy(getattr(self, name)))
        self.learner_base = nn.Sequential(base.ppm, base.cls)
        self.gram_merge = _merge_conv()
        self.cls_merge = _merge_conv()
        if self.shot > 1:
            if int(kshot_trans_dim) < 0:
                raise ValueError(f"kshot_trans_dim must be >= 0, got {kshot_trans_dim!r}")
            if kshot_trans_dim == 0:  # BAM's alternative: one K->K conv initialised to 1/K
                self.kshot_rw = nn.Conv2d(self.shot, self.shot, 1, bias=False)
                nn.init.constant_(self.kshot_rw.weight, 1.0 / self.shot)
            else:
                self.kshot_rw = nn.Sequential(nn.Conv2d(self.shot, kshot_trans_dim, 1), nn.ReLU(inplace=True),
                                              nn.Conv2d(kshot_trans_dim, self.shot, 1))
        self.kshot_trans_dim = int(kshot_trans_dim)
        self._init_base_labels(base_classes)
        self.freeze_frozen_modules()
        if base_learner is not None:
            self.load_base_learner(base_learner)

    # --- construction from a trained base learner -------------------------------------------------------------
    def load_base_learner(self, source: "PSPNet | Mapping[str, torch.Tensor] | str") -> None:
        """Copy a trained PSPNet (module, state dict in our key layout, or a file of one; ``{'state_dict': ...}``
        wrappers and ``module.`` prefixes are undone) into layer0..4, layer0p..4p and learner_base. Call it before
        the policy decomposes layer0..4. For BAM's published ``best.pth`` files see
        :func:`svf.models.checkpoints.load_bam_base_learner`."""
        state = source.state_dict() if isinstance(source, nn.Module) else read_state_dict(source, "base learner")
        for name in STAGES:
            if any(k.endswith(("conv_V.weight", "vector_S")) for k in getattr(self, name).state_dict()):
                raise RuntimeError(f"{name} is already SVD-decomposed; load the base learner before applying the "
                                   "fine-tuning policy")
        targets = {"ppm": "learner_base.0", "cls": "learner_base.1"}
        mapped = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in STAGES:
                mapped[key] = value
                mapped[f"{head}p.{rest}"] = value
            elif head in targets:
                mapped[f"{targets[head]}.{rest}"] = value
            else:
                raise KeyError(f"unexpected key {key!r} in the base-learner state dict (expected layer0..4, ppm, cls)")
        own = self.state_dict()
        expected = {k for k in own if k.split(".")[0] in STAGES + BASE_STAGES + ("learner_base",)}
        missing = sorted(expected - set(mapped))
        if missing:
            raise KeyError(f"base-learner state dict lacks {len(missing)} keys, e.g. {missing[:8]}")
        for key, value in mapped.items():
            if tuple(own[key].shape) != tuple(value.shape):
                raise ValueError(f"base-learner key {key!r}: shape {tuple(value.shape)} does not fit the model's "
                                 f"{tuple(own[key].shape)} (backbone/width/num_base_classes differ?)")
        self.load_state_dict(mapped, strict=False)

    # --- forward ------------------------------------------------------------------------------------------------
    def more_backbone_inputs(self, inputs: dict, query: torch.Tensor) -> dict:
        """Adds the scene distance psi per shot (Gram matrices of layer2, resized to layer3's size first as the
        authors do for VGG) and the base learner's logits; both come from frozen or parameter-free parts."""
        size3 = inputs["q3"].shape[-2:]
        q2 = resize(inputs["q2"], size3)
        inputs["psi"] = torch.stack([gram_distance(q2, resize(inputs["s_feat2"][:, k], size3))
                                     for k in range(inputs["s_feat2"].shape[1])], 1)       # (B, K)
        if self.training:
            # the base learner's dropout draws after the meta learner's, as in the authors' forward
            inputs["query"] = query
            return inputs
        inputs["base"] = self._base_logits(inputs.pop("q4"), query)
        return inputs

    def _base_logits(self, q4: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if self.reuse_query_features:
            with torch.no_grad():
                return self.learner_base(q4)
        return self.base_forward(query)

    @property
    def reuse_query_features(self) -> bool:
        """The base learner may read the query's layer4 instead of running layer0p..4p on the query: set by
        :meth:`share_frozen_backbone` when both stacks hold the same tensors (a frozen backbone), which is exact."""
        return getattr(self, "_reuse_query_features", False)

    def share_frozen_backbone(self) -> bool:
        """Turn the reuse on when layer0..4 equal layer0p..4p (same keys, values) and none of them trains."""
        ours = {k: v for k, v in self.state_dict().items() if k.split(".")[0] in STAGES}
        theirs = {k: v for k, v in self.state_dict().items() if k.split(".")[0] in BASE_STAGES}
        same = (not any(p.requires_grad for name in STAGES for p in getattr(self, name).parameters())
                and len(ours) == len(theirs)
                and all(k.split(".", 1)[0] + "p." + k.split(".", 1)[1] in theirs
                        and torch.equal(v, theirs[k.split(".", 1)[0] + "p." + k.split(".", 1)[1]])
                        for k, v in ours.items()))
        self._reuse_query_features = same
        return same

    def _shot_weights(self, inputs: dict):
        psi = inputs["psi"]
        if self.shot > 1:
            ordered, order = psi.sort(1)
            weight = self.kshot_rw(ordered[:, :, None, None]).flatten(1)
            weight = weight.gather(1, order.argsort(1))                         # back to the shots' order
            weights = torch.softmax(weight, 1)
        else:
            weights = torch.ones_like(psi)
        return weights, {"psi": (weights * psi).sum(1)}

    def base_forward(self, query: torch.Tensor) -> torch.Tensor:
        """Base-learner logits at the layer4p resolution (frozen, no gradient)."""
        with torch.no_grad():
            x = query
            for name in BASE_STAGES:
                x = getattr(self, name)(x)
            return self.learner_base(x)

    def head(self, inputs: dict, out_size, class_id: torch.Tensor | None = None) -> dict:
        meta, extras = self.meta_head(inputs)
        base = inputs["base"] if "base" in inputs else self._base_logits(inputs["q4"], inputs["query"])
        meta_prob, base_prob = meta.softmax(1), base.softmax(1)
        fg_base = base_prob[:, 1:]
        if self.training:
            # The episode's class is a base class during training: leave it out of the "other base classes" map.
            if class_id is None:
                raise ValueError("BAM in training mode needs class_id (batch['class_id']) to exclude the episode's "
                                 "class from the base map; call model(query, supports, support_labels, class_id=...)")
            idx = self.base_labels(class_id.view(-1).to(base.device))          # 1..num_base (0: not a base class)
            # a comparison, not boolean indexing: a mask index would make the host wait for the device every step
            labels = torch.arange(1, fg_base.shape[1] + 1, device=idx.device)
            keep = (labels[None, :] != idx[:, None]).to(fg_base.dtype)
            fg_base = fg_base * keep[:, :, None, None]
        base_map = resize(fg_base.sum(1, keepdim=True), meta.shape[-2:])
        psi = extras["psi"].view(-1, 1, 1, 1).expand_as(meta_prob[:, :1])
        bg = self.gram_merge(torch.cat([meta_prob[:, :1], psi], 1))
        fg = self.gram_merge(torch.cat([meta_prob[:, 1:], psi], 1))
        final = torch.cat([self.cls_merge(torch.cat([bg, base_map], 1)), fg], 1)
        return {"logits": resize(final, out_size), "meta_logits": resize(meta, out_size),
                "base_logits": resize(base, out_size), "psi": extras["psi"]}

    def loss(self, outputs: dict, batch: dict):
        logits = outputs["logits"]
        label = check_label(logits, batch_item(batch, "query_label"), "query_label")
        base_label = self.base_labels(check_label(logits, batch_item(batch, "query_label_full"), "query_label_full"))
        final = cross_entropy(logits, label)
        meta = cross_entropy(outputs["meta_logits"], label)
        base = cross_entropy(outputs["base_logits"], base_label)
        total = final + meta + base
        return total, {"main": final.detach(), "meta": meta.detach(), "base": base.detach()}


__all__ = ["BAM", "BASE_STAGES"]
