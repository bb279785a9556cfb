"""Fine-tune policies: which backbone tensors train, their SGD groups, and the BatchNorm mode.

A policy applies to the backbone stages ``layer0..layer4`` of a module (a backbone from :mod:`svf.backbones`, or a
whole few-shot model), or, with ``include`` (fnmatch globs on qualified module names, dict form only, e.g.
``{"kind": "svf", "include": ["layer3.*", "layer4.*"]}``), to the layers of *any* model whose names match: a stock
torchvision ResNet, a transformer, an MLP. Short-string grammar (a dict with the same fields also works):

    frozen                         nothing in layer0..4 trains
    svf[-l<layers>][-<USV>][-bn]   SVF: S (and/or U, V) of every decomposed conv in the layers; default l234, S
    bn[-l<layers>]                 BatchNorm affine (gamma, beta) of the layers; default l234
    full                           conventional fine-tune of every conv weight in layers 1-4 (= part-l1234)
    part[-l<layers>][-3x3|-1x1]    conventional fine-tune of the conv weights in the layers (only kxk / only 1x1)
    ...-bntrain                    suffix: BatchNorm of layer0..4 in train mode (batch statistics, running-stat
                                   updates) as in original PFENet; the default is eval mode with frozen statistics

``<layers>`` are ascending distinct digits 0-4, ``<USV>`` a non-empty subset of U, S, V in that order. The canonical
name drops defaults: ``svf-l234-S`` -> ``svf``, ``part-l1234`` -> ``full``. U = ``conv_U.weight``,
V = ``conv_V.weight``, S = ``vector_S``; in SVF policies the conv bias (VGG) stays frozen, as in the authors' code.
In conventional fine-tunes a conv bias follows its weight, ``3x3`` means any kernel larger than 1x1 and residual
``downsample`` convs count as 1x1. BatchNorm affine parameters and statistics stay frozen unless the policy says
otherwise.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Iterator, Mapping

from torch import nn

from .backbones.base import STAGES
from .decompose import SVD_TYPES, SVDConv2d, decompose, kernel_kind
from .policy_names import (DEFAULT_LAYERS, KINDS, PAPER_POLICIES, POLICY_PATTERN, VALID_FORMS, Policy, canonical_name,
                           is_canonical, parse_policy)


# --- selection ----------------------------------------------------------------------------------------------------

def _stages(model: nn.Module) -> list[nn.Module]:
    missing = [s for s in STAGES if not isinstance(getattr(model, s, None), nn.Module)]
    if missing:
        raise AttributeError(f"policy: {type(model).__name__} has no backbone stage(s) {missing}; policies need "
                             f"direct attributes layer0..layer4")
    return [getattr(model, s) for s in STAGES]


def _svd_tensors(layer: nn.Module, subspaces: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    u, v = ("conv_U", "conv_V") if isinstance(layer, SVDConv2d) else ("fc_U", "fc_V")
    names = {"U": f"{u}.weight", "S": "vector_S", "V": f"{v}.weight"}
    return [(names[s], layer.get_parameter(names[s])) for s in subspaces]


def _layer_units(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """Every conv, linear, SVD layer (as one unit, not its inner convs) and BatchNorm inside ``module``."""
    for name, child in module.named_children():
        qual = f"{prefix}{name}"
        if isinstance(child, SVD_TYPES) or type(child) in (nn.Conv2d, nn.Linear) or isinstance(
                child, nn.modules.batchnorm._BatchNorm):
            yield qual, child
        else:
            yield from _layer_units(child, qual + ".")


def _units(model: nn.Module, policy: Policy) -> Iterator[tuple[str, nn.Module, bool]]:
    """(qualified name, layer, whether the policy's tensors of it train) for every layer the policy governs:
    the layers of layer0..4 (training where the stage is in ``layers``), or those matching ``include``."""
    if policy.include:
        for name, m in _layer_units(model, ""):
            if any(fnmatchcase(name, g) for g in policy.include):
                yield name, m, True
        return
    for k, stage in enumerate(_stages(model)):
        for name, m in _layer_units(stage, f"{STAGES[k]}."):
            yield name, m, k in policy.layers


def _scope_parameters(model: nn.Module, policy: Policy) -> list[tuple[str, nn.Parameter]]:
    """Every parameter the policy governs (trained or frozen by it): layer0..4, or the ``include`` layers."""
    if policy.include:
        return [(f"{name}.{n}", p) for name, m, _ in _units(model, policy) for n, p in m.named_parameters()]
    return [(f"{s}.{n}", p) for s, stage in zip(STAGES, _stages(model)) for n, p in stage.named_parameters()]


def selected_parameters(model: nn.Module, policy: str | Mapping | Policy) -> Iterator[tuple[str, nn.Parameter]]:
    """``(qualified name, parameter)`` of every tensor the policy trains, in module order."""
    policy = parse_policy(policy)
    for name, m, trains in _units(model, policy):
        if not trains:
            continue
        qual = name + "."
        if policy.kind == "svf" and isinstance(m, SVD_TYPES):
            for pname, p in _svd_tensors(m, policy.subspaces):
                yield qual + pname, p
        elif policy.bn_affine and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            yield qual + "weight", m.weight
            yield qual + "bias", m.bias
        elif policy.kind == "part" and type(m) in (nn.Conv2d, nn.Linear) and kernel_kind(m) in policy.kernels:
            for pname, p in m.named_parameters(recurse=False):
                yield qual + pname, p


def apply_policy(model: nn.Module, policy: str | Mapping | Policy, rank: str = "full") -> nn.Module:
    """Set ``requires_grad`` for ``policy`` (in place; returns the model).

    SVF policies first decompose the layers they govern (all of layer0..layer4, as the authors do, or the
    ``include`` layers; layers already decomposed are left as they are) with the ``rank`` rule of
    :func:`svf.decompose.choose_rank`. Every governed parameter the policy does not select gets
    ``requires_grad=False``; parameters outside (the head) are not touched. Call :func:`set_bn_mode` after every
    ``model.train()``."""
    policy = parse_policy(policy)
    if not policy.include:
        _stages(model)  # a clear error for a model without layer0..4
    if policy.uses_svd:
        if policy.include:
            decompose(model, rank=rank, include=policy.include)
        else:
            for stage in _stages(model):
                decompose(stage, rank=rank)
    elif policy.kind == "part":
        svd = [name for name, m, trains in _units(model, policy) if trains and isinstance(m, SVD_TYPES)]
        if svd:
            raise ValueError(f"policy {policy.name!r} fine-tunes conv weights, but {svd[0]} (and {len(svd) - 1} "
                             f"more) is SVD-decomposed; call svf.decompose.merge(model) first")
    selected = [p for _, p in selected_parameters(model, policy)]
    if policy.kind != "frozen" and not selected:
        raise ValueError(f"policy {policy.name!r} selects no tensor of {type(model).__name__} (e.g. 1x1 convs in "
                         f"VGG, BatchNorm in a model without it, or globs that match nothing); a cell trained this "
                         f"way would be 'frozen'")
    for _, p in _scope_parameters(model, policy):
        p.requires_grad_(False)
    for p in selected:
        p.requires_grad_(True)
    return model


def trainable_backbone_names(model: nn.Module, policy: str | Mapping | Policy = "frozen") -> list[str]:
    """Names of the parameters in layer0..4 (or in the ``include`` layers of ``policy``) that require grad."""
    return [n for n, p in _scope_parameters(model, parse_policy(policy)) if p.requires_grad]


def param_groups(model: nn.Module, policy: str | Mapping | Policy, lr: float, backbone_lr_mult: float = 0.1,
                 weight_decay: float = 1e-4, head_params: Iterable[nn.Parameter] = ()) -> list[dict]:
    """SGD parameter groups: the policy's backbone tensors at ``lr * backbone_lr_mult`` (the authors' LR/10 for
    layer2-4, weight decay included, also on S) and ``head_params`` (those with ``requires_grad``) at ``lr``.
    Empty groups are left out. Raises if :func:`apply_policy` was not called or a head parameter is a backbone one."""
    policy = parse_policy(policy)
    backbone = [(n, p) for n, p in selected_parameters(model, policy)]
    frozen = [n for n, p in backbone if not p.requires_grad]
    if frozen or (policy.kind != "frozen" and not backbone):
        raise RuntimeError(f"param_groups: policy {policy.name!r} selects {frozen[:3] or 'nothing'}, not trainable in "
                           f"this model; call apply_policy(model, {policy.name!r}) first")
    backbone_ids = {id(p) for _, p in backbone}
    all_backbone = {id(p) for _, p in _scope_parameters(model, policy)}
    head = [p for p in head_params if p.requires_grad]
    clash = [p for p in head if id(p) in all_backbone]
    if clash:
        where = "the policy's include layers" if policy.include else "layer0..4"
        raise ValueError(f"param_groups: {len(clash)} head parameters belong to {where}; pass only head modules")
    groups = []
    if backbone_ids:
        groups.append({"params": [p for _, p in backbone], "lr": lr * backbone_lr_mult,
                       "weight_decay": weight_decay, "name": "backbone"})
    if head:
        groups.append({"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"})
    return groups


def set_bn_mode(model: nn.Module, policy: str | Mapping | Policy) -> nn.Module:
    """Every BatchNorm the policy governs (layer0..4, or the ``include`` layers) in eval mode (frozen statistics)
    unless the policy has ``-bntrain``, in which case it follows ``model.training``. Call it after each
    ``model.train()``."""
    policy = parse_policy(policy)
    train = policy.bn_train and model.training
    for _, m, _ in _units(model, policy):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(train)
    return model


def count_trainable(model: nn.Module) -> dict[str, int]:
    """Trainable element counts per stage ``layer0..layer4`` (for reports and the SVF parameter table)."""
    return {name: sum(p.numel() for p in stage.parameters() if p.requires_grad)
            for name, stage in zip(STAGES, _stages(model))}


__all__ = ["Policy", "POLICY_PATTERN", "PAPER_POLICIES", "VALID_FORMS", "STAGES", "parse_policy", "canonical_name",
           "is_canonical", "apply_policy", "selected_parameters", "param_groups", "set_bn_mode",
           "trainable_backbone_names", "count_trainable"]
