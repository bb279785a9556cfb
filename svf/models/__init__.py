"""Few-shot segmentation models: ``baseline`` (the authors' aspp.py), ``pfenet`` and ``bam`` (+ its PSPNet base
learner). See docs/models.md for every option and where it comes from.

    model = build_model("pfenet", backbone="resnet50", shot=1)
    base = build_base_learner(backbone="resnet50", base_classes=range(6, 21))      # BAM stage 1
    bam = build_model("bam", backbone="resnet50", shot=5, base_classes=range(6, 21), base_learner=base)
"""
from __future__ import annotations

from torch import nn

from .bam import BAM
from .baseline import Baseline
from .pfenet import PFENet
from .pspnet import PSPNet

MODELS = {"baseline": Baseline, "pfenet": PFENet, "bam": BAM}
# Accepted by build_model for every method so callers can pass one set of arguments; only BAM uses them.
BASE_CLASS_KWARGS = ("num_base_classes", "base_classes")


def _drop_none_dilation(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if not (k == "dilation" and v is None)}


def build_model(method: str, **kwargs) -> nn.Module:
    """Build ``method`` (``baseline`` | ``pfenet`` | ``bam``) with its constructor's keyword arguments.

    ``dilation`` defaults per method as in the authors' code: ``torchvision`` for baseline and PFENet (SVF repo's
    resnet.py), ``pfenet`` for BAM (PSPNet's dilation loop). ``num_base_classes`` and ``base_classes`` (BAM's base
    learner's classes, e.g. a fold's from ``svf.data.datasets.base_classes``) are ignored by methods without a base
    learner. Unknown arguments raise TypeError naming the method.
    """
    if method not in MODELS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(MODELS)}")
    cls = MODELS[method]
    if cls is not BAM:
        kwargs = {k: v for k, v in kwargs.items() if k not in BASE_CLASS_KWARGS}
    try:
        return cls(**_drop_none_dilation(kwargs))
    except TypeError as err:
        raise TypeError(f"build_model({method!r}): {err}") from None


def build_base_learner(**kwargs) -> PSPNet:
    """BAM's PSPNet base learner (stage 1); same backbone arguments as the BAM model it will feed."""
    try:
        return PSPNet(**_drop_none_dilation(kwargs))
    except TypeError as err:
        raise TypeError(f"build_base_learner: {err}") from None


__all__ = ["MODELS", "build_model", "build_base_learner", "Baseline", "PFENet", "BAM", "PSPNet"]
