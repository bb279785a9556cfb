"""Few-shot segmentation scores as the authors' validation computes them (docs/sources.md#evaluation-protocol).

* mIoU: for each novel class of the fold, foreground intersection and union are summed over all episodes of that
  class; the class IoUs are then averaged over the fold's classes.
* FB-IoU: background and foreground IoU, each accumulated over all episodes, averaged.

Pixels labelled 255 are ignored. Predictions and labels are binary (0 background, 1 the episode's class).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...labels import IGNORE_LABEL
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
    """Accumulates episodes; ``classes`` are the fold's novel class ids (the mIoU averages over all of them).

    ``update`` keeps the sums on the device of its inputs (no host sync per batch); the first read of a score
    (``class_iou``, ``miou``, ``fb_iou``, ``summary``) copies them to the host once."""

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
        self._pending: dict | None = None  # device sums not yet added to the dicts above

    def _sums(self, device: torch.device) -> dict:
        if self._pending is None:
            lut = torch.full((max(self.classes, default=0) + 2,), -1, dtype=torch.long)
            lut[torch.tensor([int(c) for c in self.classes], dtype=torch.long)] = torch.arange(len(self.classes))
            self._pending = {"lut": lut.to(device), "cls": torch.zeros(len(self.classes), 2, dtype=torch.float64,
                                                                        device=device),
                             "fb": torch.zeros(2, 2, dtype=torch.float64, device=device),
                             "bad": torch.zeros((), dtype=torch.long, device=device), "ids": []}
        return self._pending

    def update(self, pred: torch.Tensor, target: torch.Tensor, class_ids) -> None:
        """Add a batch of episodes: ``pred``/``target`` (B, H, W), ``class_ids`` (B,), all on one device."""
        conf = binary_confusion(pred, target)
        sums = self._sums(conf.device)
        ids = torch.as_tensor(class_ids, device=conf.device).reshape(-1).long()
        lut = sums["lut"]
        idx = lut[ids.clamp(0, len(lut) - 1)]
        idx = torch.where(ids < len(lut) - 1, idx, torch.full_like(idx, -1))
        if ids.device.type == "cpu":  # free to check at once; on a GPU the check waits for the first read
            if bool((idx < 0).any()):
                raise ValueError(f"episode class {int(ids[idx < 0][0])} is not one of the fold's classes "
                                 f"{self.classes}")
        else:
            sums["bad"] += (idx < 0).sum()
            sums["ids"].append(ids)
        sums["cls"].index_add_(0, idx.clamp(min=0), conf[:, :, 1] * (idx >= 0).unsqueeze(1))
        sums["fb"] += conf.sum(0)
        self.episodes += int(ids.numel())

    def _sync(self) -> None:
        """Move the device sums into the per-class dicts (one host transfer)."""
        if self._pending is None:
            return
        sums, self._pending = self._pending, None
        if int(sums["bad"]):
            seen = sorted(set(torch.cat(sums["ids"]).tolist()) - set(self.classes))
            raise ValueError(f"episode class {seen[0]} is not one of the fold's classes {self.classes}")
        cls, fb = sums["cls"].cpu(), sums["fb"].cpu()
        for i, c in enumerate(self.classes):
            self.class_inter[int(c)] += float(cls[i, 0])
            self.class_union[int(c)] += float(cls[i, 1])
        for k in (0, 1):
            self.fb_inter[k] += float(fb[0, k])
            self.fb_union[k] += float(fb[1, k])

    def class_iou(self) -> dict[int, float | None]:
        """IoU per class in [0, 1]; ``None`` for a class that had no pixel in any episode."""
        self._sync()
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
        self._sync()
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
