"""Few-shot segmentation scores as the authors' validation computes them (REPRODUCTION.md 1.6).

* mIoU: for each novel class of the fold, foreground intersection and union are summed over all episodes of that
  class; the class IoUs are then averaged over the fold's classes.
* FB-IoU: background and foreground IoU, each accumulated over all episodes, averaged.

Pixels labelled 255 are ignored. Predictions and labels are binary (0 background, 1 the episode's class).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE_LABEL = 255
ABSENT_CLASS_RULES = ("zero", "skip")


def binary_confusion(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-episode (background, foreground) intersection and union, shape (B, 2, 2) as [b, {inter, union}, {bg, fg}].

    ``pred`` and ``target`` have shape (B, H, W); ``target`` may contain 255 (ignored).
    """
    valid = target != IGNORE_LABEL
    p1 = (pred == 1) & valid
    t1 = (target == 1) & valid
    p0 = (pred == 0) & valid
    t0 = (target == 0) & valid
    dims = (-2, -1)
    inter = torch.stack([(p0 & t0).sum(dims), (p1 & t1).sum(dims)], dim=-1)
    union = torch.stack([(p0 | t0).sum(dims), (p1 | t1).sum(dims)], dim=-1)
    return torch.stack([inter, union], dim=1).to(torch.float64)


@dataclass
class FewShotScore:
    """Accumulates episodes; ``classes`` are the fold's novel class ids (the mIoU averages over all of them)."""

    classes: list[int]
    absent_class: str = "zero"
    class_inter: dict[int, float] = field(default_factory=dict)
    class_union: dict[int, float] = field(default_factory=dict)
    fb_inter: list[float] = field(default_factory=lambda: [0.0, 0.0])
    fb_union: list[float] = field(default_factory=lambda: [0.0, 0.0])
    episodes: int = 0

    def __post_init__(self) -> None:
        if self.absent_class not in ABSENT_CLASS_RULES:
            raise ValueError(f"absent_class must be one of {ABSENT_CLASS_RULES}, got {self.absent_class!r}")
        for c in self.classes:
            self.class_inter.setdefault(int(c), 0.0)
            self.class_union.setdefault(int(c), 0.0)

    def update(self, pred: torch.Tensor, target: torch.Tensor, class_ids) -> None:
        """Add a batch of episodes: ``pred``/``target`` (B, H, W), ``class_ids`` (B,)."""
        conf = binary_confusion(pred, target).cpu()
        ids = [int(c) for c in torch.as_tensor(class_ids).reshape(-1).tolist()]
        for b, c in enumerate(ids):
            if c not in self.class_inter:
                raise ValueError(f"episode class {c} is not one of the fold's classes {self.classes}")
            self.class_inter[c] += float(conf[b, 0, 1])
            self.class_union[c] += float(conf[b, 1, 1])
        totals = conf.sum(0)
        for k in (0, 1):
            self.fb_inter[k] += float(totals[0, k])
            self.fb_union[k] += float(totals[1, k])
        self.episodes += len(ids)

    def class_iou(self) -> dict[int, float | None]:
        """IoU per class in [0, 1]; ``None`` for a class that had no pixel in any episode."""
        return {c: (self.class_inter[c] / self.class_union[c] if self.class_union[c] > 0 else None)
                for c in self.classes}

    def miou(self) -> float:
        """Mean class IoU in [0, 1]. A class without episodes counts 0 ('zero', the authors' 1e-10 guard) or is
        left out ('skip')."""
        ious = list(self.class_iou().values())
        if self.absent_class == "zero":
            return sum(v or 0.0 for v in ious) / len(ious)
        present = [v for v in ious if v is not None]
        return sum(present) / len(present) if present else 0.0

    def fb_iou(self) -> float:
        return sum(i / u if u > 0 else 0.0 for i, u in zip(self.fb_inter, self.fb_union)) / 2

    def summary(self) -> dict:
        """Scores in percent, as the tables print them."""
        return {
            "miou": 100.0 * self.miou(),
            "fb_iou": 100.0 * self.fb_iou(),
            "class_iou": {str(c): (None if v is None else 100.0 * v) for c, v in self.class_iou().items()},
            "episodes": self.episodes,
            "classes_without_pixels": [c for c, v in self.class_iou().items() if v is None],
        }
