"""One set-up for every trainer (a cell, BAM's base learner): seed -> model -> precision -> SGD groups -> schedule ->
:class:`~svf.engine.loop.fit.Run` and its hooks -> :func:`~svf.engine.loop.fit.fit` -> the kept tensors.

A task says how to build its model and data, which parameter groups it trains and whether its backbone trains
(:class:`Task`); its recipe (``svf.pipeline.recipe.Recipe``) gives the rest: rates, momentum, weight decay, schedule,
loss groups, epochs, validation, early stop and the selection of the kept epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from .batching import Grouping
from .fit import Run, TrainState, Trainee, final_state, fit, out_of_memory, seed_everything
from .hooks import Checkpoint, EarlyStop, KeepBest
from .precision import Precision
from .schedule import LRSchedule, resolve_schedule


class Task(Trainee, Protocol):
    """A trainee that builds itself: its model (seeded by the runner), then its data once the model is placed."""

    loader: object                       # the training DataLoader, set by prepare

    def build(self) -> nn.Module:
        """The untrained model (pretrained weights loaded)."""

    def prepare(self, model: nn.Module, precision: Precision, grouping: Grouping, device: torch.device) -> None:
        """Keep the placed model; make the loaders and what validation needs."""

    def param_groups(self, recipe) -> list[dict]:
        """The SGD parameter groups (each with its ``lr`` and ``name``: head, backbone)."""

    def backbone_trains(self) -> bool:
        """Whether backbone parameters train (the recipe's ``schedule: auto`` depends on it)."""


@dataclass(frozen=True)
class RunSettings:
    """What identifies a run besides its task."""

    name: str                            # for messages (cell id, base learner id)
    spec: dict                           # the run's JSON spec: a checkpoint resumes only the identical one
    recipe: object                       # svf.pipeline.recipe.Recipe
    seed: int
    checkpoint: Path                     # last.pt
    mid_val_resets_early_stop: bool = False  # a new best found mid-epoch restarts the early-stop count
    memory_advice: str = "lower the recipe's micro_batch or batch_size"


@dataclass(frozen=True)
class Trained:
    """A finished run: its loop state, the kept tensors (loaded into the task) and their 1-based epoch."""

    state: TrainState
    kept: dict
    kept_epoch: int
    steps_per_epoch: int
    schedule: str                        # the schedule that ran: flat | poly


def train(settings: RunSettings, task: Task, device: torch.device) -> Trained:
    """Set the run up from its recipe, fit it (resuming from its checkpoint) and load the kept tensors."""
    recipe = settings.recipe
    seed_everything(settings.seed)
    precision = Precision.of(recipe)
    model = precision.place(task.build(), device)
    grouping = Grouping.of(recipe)
    task.prepare(model, precision, grouping, device)
    if len(task.loader) == 0:
        raise ValueError(f"{settings.name}: the training list gives no full batch of {recipe.batch_size}")
    optimizer = torch.optim.SGD(task.param_groups(recipe), lr=recipe.base_lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    schedule = LRSchedule(optimizer, resolve_schedule(recipe.schedule, task.backbone_trains()),
                          max_iter=recipe.epochs * len(task.loader), power=recipe.poly_power, scale=recipe.poly_scale)
    run = Run(settings.name, task, optimizer, schedule, task.loader, recipe.epochs, settings.seed, device=device,
              precision=precision, micro_batch=grouping.micro, val_every=recipe.val_every,
              mid_epoch_val=recipe.mid_epoch_val)
    hooks = [KeepBest(), EarlyStop(recipe.early_stop, settings.mid_val_resets_early_stop),
             Checkpoint(settings.checkpoint, settings.spec)]
    try:
        state = fit(run, hooks)
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory(settings.name, device, settings.memory_advice) from None
    kept, kept_epoch = final_state(state, recipe.select, task.state())
    task.load(kept)
    return Trained(state, kept, kept_epoch, len(task.loader), schedule.kind)


__all__ = ["RunSettings", "Task", "Trained", "train"]
