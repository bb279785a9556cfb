"""Load the published checkpoints of the SVF repo, PFENet and BAM into our models.

Our module names are the authors', so the mapping is the identity after these documented steps:
  1. unwrap ``{'state_dict': ...}`` (their training scripts save ``{'epoch', 'state_dict', 'optimizer'}``) and
     strip the ``module.`` prefix of DDP/DataParallel saves;
  2. per method:
     * baseline (SVF repo ``aspp.py``): drop ``kshot_rw.*`` (K > 1: created there but never used in forward);
     * pfenet (SVF repo ``pfenet.py`` and PFENet's ``PFENet.py``): nothing;
     * bam: the SVF repo's BAM has ``layer0p..layer4p``; original BAM has not (its base learner reads layer4), so
       ``layerK.*`` is copied to ``layerKp.*`` (only for an undecomposed checkpoint);
     * PSPNet base learner (BAM ``best.pth``): drop ``encoder.*`` (an alias of layer0..4 in BAM's PSPNet).
  3. strict load: any missing or unexpected key or shape mismatch raises, listing them.

Things a checkpoint does not record and the caller must match when building the model: the backbone, the shot
(BAM's ``kshot_rw`` sizes), the dilation pattern (SVF repo baseline/PFENet: ``torchvision``; PFENet's own and BAM:
``pfenet``), PFENet's bins, and SVF: a checkpoint trained with SVF holds ``conv_V`` / ``vector_S`` / ``conv_U``
keys, so layer0..4 must be decomposed (``svf.policy.apply_policy``) before loading.
``inspect_checkpoint`` reads the backbone, shot, base classes and SVF-ness off the keys to help with that.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..backbones.weights import LoadReport, read_state_dict, strict_load
from .bam import BAM, BASE_STAGES
from .baseline import Baseline
from .common import STAGES
from .pspnet import PSPNet

SVD_MARKERS = ("conv_V.weight", "vector_S", "conv_U.weight")


def _is_decomposed(keys) -> bool:
    return any(k.endswith(SVD_MARKERS) for k in keys)


def convert_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[dict, list[str], list[str]]:
    """Authors' keys -> ours for ``model``'s class. Returns (state, dropped keys, filled keys)."""
    state = dict(state)
    dropped, filled = [], []
    if isinstance(model, Baseline):
        dropped = sorted(k for k in state if k.startswith("kshot_rw."))
    elif isinstance(model, PSPNet):
        dropped = sorted(k for k in state if k.startswith("encoder."))
    elif isinstance(model, BAM) and not any(k.startswith(BASE_STAGES) for k in state):
        backbone = {k: v for k, v in state.items() if k.split(".")[0] in STAGES}
        if _is_decomposed(backbone):
            raise RuntimeError("BAM checkpoint has SVD-decomposed layer0..4 but no layer0p..layer4p: the base "
                               "learner's backbone cannot be recovered from it")
        for k, v in backbone.items():
            head, _, rest = k.partition(".")
            state[f"{head}p.{rest}"] = v
            filled.append(f"{head}p.{rest}")
    for k in dropped:
        del state[k]
    return state, dropped, sorted(filled)


def load_authors_checkpoint(model: nn.Module, source) -> LoadReport:
    """Load an authors' checkpoint (path or state dict) into our ``model`` (strict; see the module doc)."""
    state = read_state_dict(source, "checkpoint")
    state, dropped, filled = convert_state_dict(model, state)
    hint = ""
    ckpt_svd, model_svd = _is_decomposed(state), _is_decomposed(model.state_dict())
    if ckpt_svd and not model_svd:
        hint = ("the checkpoint was trained with SVF (conv_V/vector_S/conv_U keys): decompose layer0..4 with the "
                "SVF policy (svf.policy.apply_policy) before loading")
    elif model_svd and not ckpt_svd:
        hint = "the model is SVD-decomposed but the checkpoint is not: load before applying the SVF policy"
    else:
        hint = "check backbone, shot, bins and num_base_classes against inspect_checkpoint()"
    report = strict_load(model, state, "checkpoint", hint=hint)
    report.ignored = dropped + [f"{k} (filled from layer*)" for k in filled]
    return report


def to_pspnet_state(source) -> dict[str, torch.Tensor]:
    """BAM's base-learner ``best.pth`` (keys layer0..4, encoder.*, ppm.*, cls.*; maybe ``module.``) -> our PSPNet
    layout (encoder.* dropped)."""
    state = read_state_dict(source, "base-learner checkpoint")
    return {k: v for k, v in state.items() if not k.startswith("encoder.")}


def load_bam_base_learner(model: "BAM | PSPNet", source) -> LoadReport:
    """Start from a published BAM base learner instead of training one: into a PSPNet (strict load) or into a BAM
    model (``load_base_learner``: backbone -> layer0..4 and layer0p..4p, ppm/cls -> learner_base)."""
    state = to_pspnet_state(source)
    if isinstance(model, PSPNet):
        return strict_load(model, state, "base-learner checkpoint")
    if isinstance(model, BAM):
        model.load_base_learner(state)
        return LoadReport(loaded=sorted(state))
    raise TypeError(f"expected a PSPNet or BAM model, got {type(model).__name__}")


def inspect_checkpoint(source) -> dict:
    """What the keys say about the model that wrote them: method guess, backbone, shot (when visible), number of
    base classes, SVF-decomposed stages, PFENet's number of FEM scales."""
    state = read_state_dict(source, "checkpoint")
    keys = set(state)
    info: dict = {"num_tensors": len(state)}
    if "ASPP_meta.layer6_0.0.weight" in keys:
        info["method"] = "bam" if "gram_merge.weight" in keys else "baseline"
    elif "init_merge.0.0.weight" in keys:
        info["method"] = "pfenet"
        info["num_bins"] = len({k.split(".")[1] for k in keys if k.startswith("init_merge.")})
    elif "ppm.features.0.1.weight" in keys:
        info["method"] = "pspnet"
    first = "layer0.0.weight" if "layer0.0.weight" in keys else "layer0.0.conv_V.weight"
    if first in keys:
        # VGG convs have biases (layer0.0.bias / conv_U.bias); ResNet convs have none
        info["backbone"] = "vgg16" if any(k in keys for k in ("layer0.0.bias", "layer0.0.conv_U.bias")) \
            else "resnet50"
    info["svf_stages"] = sorted({k.split(".")[0] for k in keys if k.endswith("vector_S")})
    if "kshot_rw.0.weight" in keys:
        info["shot"] = int(state["kshot_rw.0.weight"].shape[1])
    elif "kshot_rw.weight" in keys:
        info["shot"] = int(state["kshot_rw.weight"].shape[1])
    for cls_key in ("learner_base.1.4.weight", "cls.4.weight"):
        if cls_key in keys:
            info["num_base_classes"] = int(state[cls_key].shape[0]) - 1
    return info


__all__ = ["convert_state_dict", "load_authors_checkpoint", "load_bam_base_learner", "to_pspnet_state",
           "inspect_checkpoint"]
