"""Learning-rate schedules of the recipes (docs/sources.md#optimizer-and-schedule).

* ``flat``: the groups keep their initial learning rates. This is what the authors' SVF code does in effect: it
  re-creates a CosineAnnealingLR every iteration, so the rate never moves.
* ``poly``: ``lr = initial * poly_scale * (1 - it / max_iter) ** poly_power``. With ``poly_scale = 10`` this is
  their ``poly_learning_rate(..., index_split=-1)``, which puts every group at 10x the base rate.
* ``auto``: the authors' training scripts: ``flat`` when backbone parameters train (SVF), ``poly`` otherwise.
"""
from __future__ import annotations

from torch.optim import Optimizer

SCHEDULES = ("auto", "flat", "poly")


def resolve_schedule(name: str, backbone_trains: bool) -> str:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    if name == "auto":
        return "flat" if backbone_trains else "poly"
    return name


class LRSchedule:
    """Sets every group's learning rate for a global iteration index; stateless apart from its settings, so a
    resumed run only needs the iteration index."""

    def __init__(self, optimizer: Optimizer, kind: str, max_iter: int, power: float = 0.9, scale: float = 1.0):
        if kind not in ("flat", "poly"):
            raise ValueError(f"schedule must be 'flat' or 'poly' here, got {kind!r}")
        self.optimizer = optimizer
        self.kind = kind
        self.max_iter = max(1, int(max_iter))
        self.power = float(power)
        self.scale = float(scale)
        self.initial = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, self.initial):
            group["initial_lr"] = lr

    def factor(self, iteration: int) -> float:
        if self.kind == "flat":
            return 1.0
        progress = min(max(iteration, 0), self.max_iter) / self.max_iter
        return self.scale * (1.0 - progress) ** self.power

    def set(self, iteration: int) -> list[float]:
        factor = self.factor(iteration)
        for group, lr in zip(self.optimizer.param_groups, self.initial):
            group["lr"] = lr * factor
        return [group["lr"] for group in self.optimizer.param_groups]
