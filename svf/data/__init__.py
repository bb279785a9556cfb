"""Datasets: downloads, preparation of PASCAL-5i / COCO-20i, synthetic stand-ins, fold splits, episodes.

Only the light, shared names are re-exported here; import the submodules for the rest.
"""
from .datasets import (
    CLASS_NAMES,
    DATASETS,
    MIN_PIXELS,
    NUM_CLASSES,
    SETTINGS,
    base_classes,
    fold_classes,
    novel_classes,
    open_dataset,
)

__all__ = [
    "CLASS_NAMES", "DATASETS", "MIN_PIXELS", "NUM_CLASSES", "SETTINGS",
    "base_classes", "fold_classes", "novel_classes", "open_dataset",
]
