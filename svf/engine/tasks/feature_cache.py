"""Validation of frozen-backbone cells without recomputing the backbone every epoch.

The authors validate on the same 1000 episodes after every epoch. When nothing in layer0..4 trains and their
BatchNorm statistics stay frozen (every policy but ``-bntrain`` ones), the backbone's part of those episodes
(``model.backbone_inputs``: layer2/3 features, priors, BAM's scene distances and base-learner logits) is the same in
every pass: the first pass computes and keeps it, later passes run only the head. Same operations on the same
tensors, so the same scores (tests/engine/test_feature_cache.py), and the data loading is skipped too.

The cache lives on the host (pinned when a GPU computes) and holds at most ``budget_gb``: the first batches up to
the budget (paper scale, R50 1-shot at 473 px: about 44 MB per episode in float32, so 16 GB hold about 370 of 1000
episodes). Later passes read only the episodes beyond it from the data (a loader over that rest of the fixed episode
list) and recompute their backbone part; the cached ones are neither loaded nor decoded again.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ...backbones.base import STAGES
from ...policy import Policy
from .metrics import FewShotScore
from ..loop.precision import Precision
from ..loop.device import to_device
from .scoring import score_logits


def backbone_trains(model: nn.Module) -> bool:
    """Some tensor of layer0..4 trains."""
    return any(p.requires_grad for name in STAGES for p in getattr(model, name).parameters())


def backbone_is_frozen(model: nn.Module, policy: Policy) -> bool:
    """Nothing in layer0..4 trains and their BatchNorm statistics do not move."""
    return not backbone_trains(model) and not policy.bn_train


def nbytes(value) -> int:
    """Bytes of the tensors in a (nested dict / list of) tensor(s)."""
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


def _to(value, device, pin: bool = False):
    if torch.is_tensor(value):
        value = value.to(device, non_blocking=True)
        return value.pin_memory() if pin else value
    if isinstance(value, dict):
        return {k: _to(v, device, pin) for k, v in value.items()}
    if isinstance(value, list):
        return [_to(v, device, pin) for v in value]
    return value


class ValidationCache:
    """Per validation batch: the backbone inputs, the original labels and the episode classes; the first batches
    up to the budget."""

    def __init__(self, budget_gb: float = 16.0):
        self.budget = int(budget_gb * 2**30)
        self.used = 0
        self.entries: list[dict] | None = None  # None: no pass yet
        self.batches = 0                        # batches of a pass
        self.rest = None                        # the batches beyond the budget: a loader over their episodes

    def score(self, model: nn.Module, loader, device: torch.device, classes, absent_class: str,
              precision: Precision = Precision()) -> FewShotScore:
        model.eval()
        score = FewShotScore(classes=classes, absent_class=absent_class)
        with torch.no_grad():
            if self.entries is None:  # first pass: compute from the loader, keep the batches up to the budget
                self.entries, full = [], False
                for batch in loader:
                    entry = self._compute(model, batch, device, precision)
                    kept = None if full else self._keep(entry, device)
                    full = kept is None
                    if kept is not None:
                        self.entries.append(kept)
                    self.batches += 1
                    self._score(model, entry, score, device, precision)
                return score
            for entry in self.entries:
                self._score(model, entry, score, device, precision)
            if len(self.entries) < self.batches:
                for batch in self._rest(loader):
                    self._score(model, self._compute(model, batch, device, precision), score, device, precision)
        return score

    def _rest(self, loader):
        """The batches beyond the cached ones: a loader over the rest of a DataLoader's (fixed) episode list, so
        the cached episodes are not loaded again; any other iterable is walked and its cached part skipped."""
        if self.rest is None:
            if isinstance(loader, DataLoader) and loader.batch_size:
                start = len(self.entries) * loader.batch_size
                self.rest = DataLoader(Subset(loader.dataset, range(start, len(loader.dataset))),
                                       batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                                       collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                                       persistent_workers=loader.persistent_workers)
            else:
                return (b for i, b in enumerate(loader) if i >= len(self.entries))
        return self.rest

    @staticmethod
    def _compute(model, batch, device, precision) -> dict:
        labels = batch["query_label_orig"]
        batch = precision.prepare_batch(to_device(batch, device))
        with precision.autocast(device):
            inputs = model.backbone_inputs(batch["query"], batch["supports"], batch["support_labels"])
        return {"inputs": inputs, "labels": labels, "class_id": batch["class_id"],
                "size": tuple(batch["query"].shape[-2:])}

    @staticmethod
    def _score(model, entry, score, device, precision) -> None:
        with precision.autocast(device):
            logits = model.head(_to(entry["inputs"], device), entry["size"], None)["logits"]
        score_logits(score, logits, entry["labels"], _to(entry["class_id"], device), device)

    def _keep(self, entry: dict, device: torch.device) -> dict | None:
        size = nbytes(entry["inputs"])
        if self.used + size > self.budget:
            return None
        self.used += size
        return {**entry, "inputs": _to(entry["inputs"], "cpu", pin=device.type == "cuda"),
                "class_id": entry["class_id"].cpu()}


__all__ = ["ValidationCache", "backbone_is_frozen", "backbone_trains", "nbytes"]
