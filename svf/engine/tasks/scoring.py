"""Scoring episodes: the few-shot forward of every method, batches to the device, and validation/test scores on
original-resolution labels (docs/sources.md#evaluation-protocol), accumulated on the device."""
from __future__ import annotations

import torch
from torch import nn

from .metrics import FewShotScore
from ..loop.device import to_device
from ..loop.fit import progress_bar
from ..loop.precision import Precision


def forward(model: nn.Module, batch: dict) -> dict:
    """The few-shot forward of every method; the episode class lets BAM drop it from its base map in training."""
    return model(batch["query"], batch["supports"], batch["support_labels"], class_id=batch["class_id"])


@torch.no_grad()
def score_episodes(model: nn.Module, loader, device: torch.device, classes: list[int],
                   absent_class: str = "zero", progress: str | None = None,
                   precision: Precision = Precision(), trivial: FewShotScore | None = None) -> FewShotScore:
    """Run evaluation episodes and score them on original-resolution labels (docs/sources.md#evaluation-protocol): the logits of
    the padded val_size x val_size input are resized to L x L (L = longer side of the original label) and compared
    with the original label in the top-left corner; everything else is ignored. Scores accumulate on the device:
    one host sync when the score is read. ``trivial`` (optional) accumulates the all-foreground predictor on the same
    episodes: the floor a trained cell must beat to count as learnt (the study's failure rate)."""
    model.eval()
    score = FewShotScore(classes=classes, absent_class=absent_class)
    iterator = progress_bar(loader, progress)
    for batch in iterator:
        labels = batch["query_label_orig"]
        batch = precision.prepare_batch(to_device(batch, device))
        with precision.autocast(device):
            logits = forward(model, batch)["logits"]
        score_logits(score, logits, labels, batch["class_id"], device, trivial)
    return score


def score_logits(score: FewShotScore, logits: torch.Tensor, labels, class_ids: torch.Tensor,
                 device: torch.device, trivial: FewShotScore | None = None) -> None:
    """Add a batch: each image's logits resized to its original label's longer side, the top-left H x W scored."""
    for b, label in enumerate(labels):
        h, w = label.shape[-2:]
        side = max(h, w)
        up = nn.functional.interpolate(logits[b:b + 1].float(), size=(side, side), mode="bilinear",
                                       align_corners=True)
        pred = up.argmax(1)[:, :h, :w]
        target = label.reshape(1, h, w).to(device, non_blocking=True)
        score.update(pred, target, class_ids[b:b + 1])
        if trivial is not None:
            trivial.update(torch.ones_like(pred), target, class_ids[b:b + 1])


__all__ = ["forward", "score_episodes", "score_logits"]
