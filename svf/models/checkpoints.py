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

from ..backbones.base import STAGES
from ..backbones.weights import LoadReport, read_state_dict, strict_load
from .bam import BAM, BASE_STAGES
from .baseline import Baseline
from .pspnet import PSPNet

SVD_MARKERS = ("conv_V.weight", "vector_S", "conv_U.weight")


#: Where BAM's README says its trained base learners come from (to unpack under initmodel/PSPNet).
BAM_BASE_LEARNERS_URL = ("https://mailnwpueducn-my.sharepoint.com/:u:/g/personal/langchunbo_mail_nwpu_edu_cn/"
                         "ETERT3xe5ndEpDhStts7JmcBlYDY_2G0hPVJUBtLLG-njg?e=MLzVIL")

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
    report.ignored, report.filled = dropped, filled
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
    """What the keys say about the model that wrote them: method guess, backbone, width, ResNet depths,
    reduce_dim, shot (when visible), number of base classes, SVF-decomposed stages, PFENet's number of FEM
    scales."""
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
        # width: channels of the first stem conv over 64; depths: ResNet blocks per stage
        out_key = "layer0.0.weight" if "layer0.0.weight" in keys else "layer0.0.conv_U.weight"
        info["width"] = int(state[out_key].shape[0]) / 64
        if info["backbone"] == "resnet50":
            info["depths"] = [len({k.split(".")[1] for k in keys if k.startswith(f"{s}.")}) for s in STAGES[1:]]
    if "down_supp.0.weight" in keys:
        info["reduce_dim"] = int(state["down_supp.0.weight"].shape[0])
    if "learner_base.1.0.weight" in keys:
        info["base_cls_dim"] = int(state["learner_base.1.0.weight"].shape[0])
    info["svf_stages"] = sorted({k.split(".")[0] for k in keys if k.endswith("vector_S")})
    if "kshot_rw.0.weight" in keys:
        info["shot"] = int(state["kshot_rw.0.weight"].shape[1])
    elif "kshot_rw.weight" in keys:
        info["shot"] = int(state["kshot_rw.weight"].shape[1])
    for cls_key in ("learner_base.1.4.weight", "cls.4.weight"):
        if cls_key in keys:
            info["num_base_classes"] = int(state[cls_key].shape[0]) - 1
    return info


def check_checkpoint(source, method: str | None = None, backbone: str | None = None, shot: int | None = None,
                     decompose=None, size: int = 65, **model_kwargs) -> dict:
    """Build the model a checkpoint belongs to (settings not given are read off the keys, shot defaults to 1),
    decompose it with ``decompose(model)`` when the checkpoint holds SVD keys, load it strictly and run one random
    episode in eval mode. Returns what was used and the logits' shape; raises on any mismatch."""
    from . import build_model

    state = read_state_dict(source, "checkpoint")
    info = inspect_checkpoint(state)
    method = method or info.get("method")
    if method not in ("baseline", "pfenet", "bam"):
        raise ValueError(f"cannot tell the method of this checkpoint ({info}); pass method=")
    settings = {"backbone": backbone or info.get("backbone", "resnet50"), "shot": int(shot or info.get("shot", 1))}
    for key in ("width", "depths", "reduce_dim", "base_cls_dim"):
        if key in info and key not in model_kwargs and (key != "base_cls_dim" or method == "bam"):
            model_kwargs[key] = tuple(info[key]) if key == "depths" else info[key]
    if settings["backbone"] == "vgg16":
        model_kwargs.pop("depths", None)
    if method == "bam" and "num_base_classes" not in model_kwargs and "base_classes" not in model_kwargs \
            and "fold" not in model_kwargs:
        model_kwargs["num_base_classes"] = info.get("num_base_classes", 15)
    model = build_model(method, **settings, **model_kwargs)
    if info["svf_stages"]:
        if decompose is None:
            raise RuntimeError(f"the checkpoint is SVD-decomposed ({info['svf_stages']}); pass decompose=")
        decompose(model)
    report = load_authors_checkpoint(model, state)
    g = torch.Generator().manual_seed(0)
    k = settings["shot"]
    query, supports = torch.randn(1, 3, size, size, generator=g), torch.randn(1, k, 3, size, size, generator=g)
    labels = (torch.rand(1, k, size, size, generator=g) > 0.5).long()
    with torch.no_grad():
        logits = model.eval()(query, supports, labels)["logits"]
    if not torch.isfinite(logits).all():
        raise RuntimeError("the loaded model produces non-finite logits")
    return {"method": method, **settings, **{k: v for k, v in model_kwargs.items() if k != "base_classes"},
            "svf_stages": info["svf_stages"], "loaded": len(report.loaded), "ignored": report.ignored,
            "logits_shape": list(logits.shape)}


__all__ = ["BAM_BASE_LEARNERS_URL", "convert_state_dict", "load_authors_checkpoint", "load_bam_base_learner", "to_pspnet_state",
           "inspect_checkpoint", "check_checkpoint"]
