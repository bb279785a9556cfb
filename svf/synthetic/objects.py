"""The demo's stand-in for ImageNet: object-centric images of every synthetic class look, drawn on the fly.

ImageNet teaches a backbone the concepts PASCAL later asks about (its classes cover PASCAL's), one object per
image. Here each item is one object of a class in 1..``classes`` (the looks of :mod:`svf.synthetic.raw`, so the
80 COCO looks include PASCAL's 20) on the same kind of background, centred with jitter, at a random scale, aspect
and rotation, in one of its class's colours, with its label: single-label classification, as ImageNet. Nothing is
written to disk; item ``i`` is a pure function of (seed, i).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .looks import MAX_ROTATION, background, check_scheme, class_look, finish, paint_object, rotated_polygons
from ..data.transforms import MEAN, STD

_OBJECTS = 3  # seed-sequence tag, apart from the other users of (seed, index)


def object_image(c: int, size: int, rng: np.random.Generator, looks: str = "shared") -> np.ndarray:
    """One object of class ``c`` on a background: uint8 (size, size, 3)."""
    import cv2

    image = background(size, size, rng)
    side = rng.uniform(0.45, 0.95) * size
    aspect = rng.uniform(0.7, 1.4)
    half = np.array([side * np.sqrt(aspect), side / np.sqrt(aspect)]) / 2
    half = np.minimum(half, size / 2 - 1)
    centre = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    centre = np.clip(centre, half, size - half)
    mask = np.zeros((size, size), np.uint8)
    for polygon in rotated_polygons(class_look(c, looks)[0], float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))):
        points = np.round((polygon * half + centre - 0.5) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=4)
    paint_object(image, mask.astype(bool), c, rng, looks)
    return finish(image, rng)


class ObjectImages(Dataset):
    """``length`` items {"image": normalised (3, size, size) float tensor, "label": class - 1}; classes cycle.
    ``looks``: the look scheme of svf.synthetic.looks (the world's)."""

    def __init__(self, classes: int, size: int, length: int, seed: int = 0, looks: str = "shared"):
        if classes < 1 or size < 8 or length < 1:
            raise ValueError(f"ObjectImages needs classes >= 1, size >= 8, length >= 1; got {classes}, {size}, "
                             f"{length}")
        self.classes, self.size, self.length, self.seed = int(classes), int(size), int(length), int(seed)
        self.looks = check_scheme(looks)
        self._mean = torch.tensor(MEAN).view(3, 1, 1)
        self._std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([_OBJECTS, self.seed, int(index)])
        c = int(rng.integers(1, self.classes + 1))
        image = torch.from_numpy(object_image(c, self.size, rng, self.looks)).permute(2, 0, 1).float()
        return {"image": (image - self._mean) / self._std, "label": c - 1}


__all__ = ["ObjectImages", "object_image"]
