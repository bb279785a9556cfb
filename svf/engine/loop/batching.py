"""The authors' multi-GPU loss arithmetic in one process, and micro-batches that fit a GPU.

The authors trained on 4 GPUs x 2 images (BAM's base learner 4 x 3): every GPU averaged its loss over the valid
pixels of its own images, and DistributedDataParallel averaged the gradients over the GPUs. So the loss of a batch of
8 is the mean over 4 *groups* of 2 images of each group's mean, not one mean over all pixels of the 8 images (images
with more valid pixels weigh more in the latter). ``loss_groups`` (recipe) sets the number of groups (1: one mean).

``micro_batch`` (recipe) sets how many images one forward/backward holds; the gradients of the micro-batches add up
to the step's gradient. A micro-batch holds whole groups, so each group's mean is computed inside one forward; with
BatchNorm frozen (every SVF recipe) the result is exactly that of the whole batch at once. ``null`` = one group, the
authors' per-GPU batch, which is also what reproduces their per-GPU BatchNorm statistics when BN trains
(``-bntrain``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch


def check_grouping(batch_size: int, loss_groups: int, micro_batch: int | None) -> tuple[int, int]:
    """(images per group, images per micro-batch) for a batch; errors name the setting to change."""
    batch_size, loss_groups = int(batch_size), int(loss_groups)
    if loss_groups < 1 or batch_size % loss_groups:
        raise ValueError(f"loss_groups={loss_groups} must divide batch_size={batch_size} (the authors: 4 GPUs x 2)")
    group = batch_size // loss_groups
    micro = group if micro_batch is None else int(micro_batch)
    if micro < 1 or micro % group or batch_size % micro:
        raise ValueError(f"micro_batch={micro_batch} must be a multiple of the group size {group} "
                         f"(batch_size {batch_size} / loss_groups {loss_groups}) that divides batch_size")
    return group, micro


def slice_batch(batch: Mapping, start: int, stop: int) -> dict:
    """Images ``start:stop`` of a collated batch (tensors along dim 0; per-image lists sliced as lists)."""
    return {k: (v[start:stop] if torch.is_tensor(v) or isinstance(v, (list, tuple)) else v) for k, v in batch.items()}


def slice_outputs(outputs: Mapping, start: int, stop: int) -> dict:
    """Images ``start:stop`` of a model's outputs (tensors along dim 0; lists of such tensors element-wise)."""
    def cut(v):
        if torch.is_tensor(v):
            return v[start:stop] if v.dim() else v
        if isinstance(v, (list, tuple)):
            return [cut(x) for x in v]
        return v
    return {k: cut(v) for k, v in outputs.items()}


def micro_batches(batch: Mapping, micro: int) -> Iterator[dict]:
    size = batch_length(batch)
    for start in range(0, size, micro):
        yield slice_batch(batch, start, min(start + micro, size)) if micro < size else dict(batch)


def batch_length(batch: Mapping) -> int:
    for value in batch.values():
        if torch.is_tensor(value) and value.dim():
            return int(value.shape[0])
    raise ValueError(f"batch has no tensor with a batch dimension (keys: {sorted(batch)})")


def grouped_loss(loss_fn: Callable[[dict, dict], torch.Tensor], outputs: Mapping, batch: Mapping, group: int,
                 loss_groups: int) -> torch.Tensor:
    """Sum over the groups in this (micro-)batch of each group's loss, divided by ``loss_groups``: summed over the
    micro-batches of a step, the mean over all groups, as the authors' gradient averaged over GPUs."""
    size = batch_length(batch)
    if size == group:
        return loss_fn(dict(outputs), dict(batch)) / loss_groups
    total = 0.0
    for start in range(0, size, group):
        total = total + loss_fn(slice_outputs(outputs, start, start + group), slice_batch(batch, start, start + group))
    return total / loss_groups


@dataclass(frozen=True)
class Grouping:
    """A recipe's loss groups and micro-batch, checked: what a training step needs of them."""

    group: int          # images per loss group
    micro: int          # images per forward/backward
    loss_groups: int

    @classmethod
    def of(cls, recipe) -> "Grouping":
        """From a recipe (``batch_size``, ``loss_groups``, ``micro_batch``; svf.pipeline.recipe.Recipe)."""
        group, micro = check_grouping(recipe.batch_size, recipe.loss_groups, recipe.micro_batch)
        return cls(group, micro, int(recipe.loss_groups))

    def loss(self, loss_fn: Callable[[dict, dict], torch.Tensor], outputs: Mapping, batch: Mapping) -> torch.Tensor:
        return grouped_loss(loss_fn, outputs, batch, self.group, self.loss_groups)


__all__ = ["Grouping", "batch_length", "check_grouping", "grouped_loss", "micro_batches", "slice_batch", "slice_outputs"]
