"""The training loop of every run (a cell, a BAM base learner): one process, one device, exact resume.

``fit(run, hooks)`` steps the optimizer over the epochs (the recipe's schedule, micro-batches, precision, no host
sync per step), validates the run's :class:`Trainee` after every epoch (and mid-epoch when asked), and hands every
validation and every finished epoch to small hooks (svf/engine/loop/hooks.py: the best state, the early stop, the
checkpoint). svf/engine/loop/runner.py sets a run up from a recipe.

Resume: ``last.pt`` (svf/engine/loop/checkpoint.py) holds the trained tensors, optimizer, best state, log rows,
epoch and RNG states after each finished epoch. Every epoch reseeds from (seed, epoch) as the authors'
``setup_seed(321+epoch)`` does, and data order and augmentation derive from (seed, epoch, index), so a killed run
resumed from its last checkpoint ends with exactly the metrics of an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from ... import console, files
from ...errors import DeviceError, TrainingError
from .batching import batch_length, micro_batches
from .precision import Precision
from .schedule import LRSchedule
from .device import to_device

LOG_COLUMNS = ("epoch", "step", "loss", "lr_head", "lr_backbone", "val_miou", "time_s")


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the message names the cell, epoch and step."""


class DeviceMemoryError(DeviceError):
    """The GPU ran out of memory; the message names the cell and the setting to lower."""


def out_of_memory(name: str, device: torch.device, advice: str) -> DeviceMemoryError:
    held = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return DeviceMemoryError(f"{name}: out of memory on {device} (peak {held:.1f} GiB allocated); {advice}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    """What survives between epochs (and in the checkpoint)."""

    epoch: int = 0                       # epochs finished
    iteration: int = 0
    best_miou: float = -1.0
    best_epoch: int = -1
    best_state: dict | None = None
    epochs_without_best: int = 0
    stopped: bool = False                # early stop reached (a resumed run must not train on)
    log_rows: list = field(default_factory=list)
    wall_time_s: float = 0.0


def write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, buffer.getvalue())


@dataclass
class Run:
    """One training run for :func:`fit`: what to step and validate, over which data, and how."""

    name: str                            # for messages (cell id, base learner id)
    trainee: "Trainee"
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loader: object                       # DataLoader over a dataset with set_epoch(epoch)
    epochs: int
    seed: int                            # every epoch reseeds from (seed, epoch)
    device: torch.device = torch.device("cpu")
    precision: Precision = Precision()
    micro_batch: int | None = None       # images per forward/backward (None: the whole batch); see batching.py
    val_every: int = 1                   # validate after every k-th epoch and the last (1: every epoch, theirs)
    mid_epoch_val: bool = False          # also validate halfway through every epoch but the first (COCO)
    nan_check_every: int = 50            # steps between the (host-syncing) checks for a non-finite loss


class Trainee(Protocol):
    """What a run trains: its loss, its validation and its tensors (a cell, a BAM base learner)."""

    def step(self, chunk: dict) -> torch.Tensor:
        """The loss of a (micro-)batch, forward only."""

    def validate(self, epoch: int) -> float:
        """The score to maximise after ``epoch`` (0-based)."""

    def state(self) -> dict:
        """The tensors to checkpoint and to keep as the best."""

    def load(self, tensors: dict) -> None:
        """Put ``tensors`` (from :meth:`state`) back."""

    def train_mode(self) -> None:
        """Modules in their training modes (called at every epoch's start and after a mid-epoch validation)."""


class Hook:
    """Sees every validation (``mid``: the mid-epoch one) and every finished epoch of :func:`fit`; may resume it."""

    def resume(self, run: Run) -> "TrainState | None":
        return None

    def validated(self, run: Run, state: "TrainState", epoch: int, improved: bool, mid: bool) -> None:
        pass

    def epoch_done(self, run: Run, state: "TrainState") -> None:
        pass


def fit(run: Run, hooks: list[Hook]) -> TrainState:
    """Train with a validation after every epoch; ``hooks`` (svf.engine.loop.hooks) see every validation and every
    finished epoch, and the first that resumes the run (a checkpoint of the same spec) gives its state."""
    state = next((s for s in (hook.resume(run) for hook in hooks) if s is not None), None) or TrainState()
    steps = len(run.loader)
    scaler = run.precision.scaler(run.device)

    def validation(epoch: int, mid: bool) -> float:
        score = float(run.trainee.validate(epoch))
        improved = score > state.best_miou
        if improved:
            state.best_miou, state.best_epoch = score, epoch
        for hook in hooks:
            hook.validated(run, state, epoch, improved, mid)
        return score

    while state.epoch < run.epochs and not state.stopped:
        epoch = state.epoch
        started = time.time()
        seed_everything(run.seed + epoch)
        run.loader.dataset.set_epoch(epoch)
        run.trainee.train_mode()
        losses: list[torch.Tensor] = []  # on the device: no host sync per step
        for step, batch in enumerate(progress_bar(run.loader, f"{run.name} epoch {epoch + 1}/{run.epochs}")):
            run.schedule.set(state.iteration)
            batch = run.precision.prepare_batch(to_device(batch, run.device))
            losses.append(train_step(run.optimizer, batch, run.trainee.step, run.micro_batch, run.precision, scaler,
                                     run.device))
            state.iteration += 1
            if (step + 1) % run.nan_check_every == 0 or step + 1 == steps:
                _check_finite(losses, run.name, epoch, steps)
            if run.mid_epoch_val and epoch > 0 and step == round(steps / 2):
                # the authors' sub-epoch validation: `epoch > 0 and i == round(len(train_loader) / 2)`
                validation(epoch, mid=True)
                run.trainee.train_mode()
        mean_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        validates = (epoch + 1) % max(1, run.val_every) == 0 or epoch + 1 == run.epochs
        score = validation(epoch, mid=False) if validates else float("nan")
        elapsed = time.time() - started
        state.wall_time_s += elapsed
        lrs = group_lrs(run.optimizer)  # the rates of the epoch's last step
        state.log_rows.append({
            "epoch": epoch + 1, "step": state.iteration, "loss": mean_loss,
            "lr_head": lrs.get("head", ""), "lr_backbone": lrs.get("backbone", ""),
            "val_miou": score, "time_s": round(elapsed, 3),
        })
        console.progress(f"[{run.name}] epoch {epoch + 1}/{run.epochs} loss {mean_loss:.4f} val {score:.2f} "
                         f"(best {state.best_miou:.2f} @ {state.best_epoch + 1}) {elapsed:.1f}s")
        state.epoch = epoch + 1
        for hook in hooks:
            hook.epoch_done(run, state)
    return state


def progress_bar(iterable, desc: str | None):
    """A tqdm bar on a terminal (none in Snakemake logs)."""
    if desc and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, leave=False)
    return iterable


def train_step(optimizer: torch.optim.Optimizer, batch: dict, step: Callable, micro_batch: int | None,
               precision: Precision, scaler: torch.amp.GradScaler, device: torch.device) -> torch.Tensor:
    """One optimizer step over ``batch`` (on ``device``) in micro-batches; the step's loss, left on the device."""
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for chunk in micro_batches(batch, micro_batch or batch_length(batch)):
        with precision.autocast(device):
            loss = step(chunk)
        scaler.scale(loss).backward()
        total += loss.detach().float()
    scaler.step(optimizer)
    scaler.update()
    return total


def _check_finite(losses: list[torch.Tensor], name: str, epoch: int, steps: int) -> None:
    """One host sync for the steps so far: the first non-finite loss stops the run, naming epoch and step."""
    values = torch.stack(losses)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        raise NonFiniteLossError(f"{name}: loss is {float(values[first])} at epoch {epoch + 1}, step "
                                 f"{first + 1}/{steps}; stopping, no metrics were written")


def group_lrs(optimizer) -> dict[str, float]:
    return {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}


def final_state(state: TrainState, select: str, current: dict) -> tuple[dict, int]:
    """The state to keep (best validation epoch or the last one) and its 1-based epoch."""
    if select == "best" and state.best_state is not None:
        return state.best_state, state.best_epoch + 1
    return current, state.epoch
