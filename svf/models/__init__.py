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
BASE_CLASS_KWARGS = ("num_base_classes", "base_classes", "dataset", "fold", "coco_split")


def _resolve_base_classes(kwargs: dict) -> dict:
    """``dataset`` (+ ``fold``) -> BAM's base classes: with a fold the fold's base class ids (svf.data.datasets,
    COCO split ``coco_split``, default interleaved as the authors'); without one only their number (15 / 60)."""
    kwargs = dict(kwargs)
    dataset, fold = kwargs.pop("dataset", None), kwargs.pop("fold", None)
    coco_split = kwargs.pop("coco_split", "interleaved")
    if dataset is None or kwargs.get("base_classes") is not None:
        return kwargs
    from ..data import datasets

    if fold is not None:
        kwargs["base_classes"] = datasets.base_classes(dataset, int(fold), coco_split)
    elif kwargs.get("num_base_classes") is None:
        kwargs["num_base_classes"] = len(datasets.base_classes(dataset, 0, coco_split))
    return kwargs


def _drop_none_dilation(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if not (k == "dilation" and v is None)}


def build_model(method: str, **kwargs) -> nn.Module:
    """Build ``method`` (``baseline`` | ``pfenet`` | ``bam``) with its constructor's keyword arguments.

    ``dilation`` defaults per method as in the authors' code: ``torchvision`` for baseline and PFENet (SVF repo's
    resnet.py), ``pfenet`` for BAM (PSPNet's dilation loop). ``num_base_classes``, ``base_classes``, ``dataset``,
    ``fold`` and ``coco_split`` are ignored by methods without a base learner; for BAM, ``dataset`` + ``fold``
    stand in for ``base_classes``. Unknown arguments raise TypeError naming the method.
    """
    if method not in MODELS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(MODELS)}")
    cls = MODELS[method]
    if cls is BAM:
        kwargs = _resolve_base_classes(kwargs)
    else:
        kwargs = {k: v for k, v in kwargs.items() if k not in BASE_CLASS_KWARGS}
    try:
        return cls(**_drop_none_dilation(kwargs))
    except TypeError as err:
        raise TypeError(f"build_model({method!r}): {err}") from None


def build_base_learner(**kwargs) -> PSPNet:
    """BAM's PSPNet base learner (stage 1); same backbone arguments as the BAM model it will feed (``dataset`` +
    ``fold`` may stand in for ``base_classes`` as in :func:`build_model`)."""
    try:
        return PSPNet(**_drop_none_dilation(_resolve_base_classes(kwargs)))
    except TypeError as err:
        raise TypeError(f"build_base_learner: {err}") from None


__all__ = ["MODELS", "build_model", "build_base_learner", "Baseline", "PFENet", "BAM", "PSPNet"]
