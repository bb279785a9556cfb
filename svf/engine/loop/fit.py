"""The training loop of every run (a cell, a BAM base learner): one process, one device, exact resume.

``fit(run)`` steps the optimizer over the epochs (the recipe's schedule, micro-batches, precision, no host sync per
step), validates after every epoch (and mid-epoch when asked), and hands every validation and every finished
epoch to small hooks: :class:`KeepBest` (the best state, the authors' best-epoch selection), :class:`EarlyStop`
(their ``stop_interval``) and :class:`Checkpoint` (``last.pt`` after each epoch).

Resume: ``last.pt`` holds the trained tensors, optimizer, best state, log rows, epoch and RNG states after each
finished epoch. Every epoch reseeds from (seed, epoch) as the authors' ``setup_seed(321+epoch)`` does, and data
order and augmentation derive from (seed, epoch, index), so a killed run resumed from its last checkpoint ends with
exactly the metrics of an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


def _rng_state() -> dict:
    """The generators' states as tensors and plain data (loadable with weights_only=True); for the record only,
    as every epoch reseeds from (seed, epoch)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                      int(has_gauss), float(cached)],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def save_checkpoint(path: Path, spec: dict, model_state: dict, optimizer, state: TrainState) -> None:
    files.torch_save(path, {"spec": spec, "state": model_state, "optimizer": optimizer.state_dict(),
                             "train": state.__dict__, "rng": _rng_state()})


def load_checkpoint(path: Path, spec: dict, load_state, optimizer) -> TrainState | None:
    """Restore a run from ``path`` when it exists and was made with the same spec; otherwise start afresh.

    A checkpoint that cannot be read (a full disk, a broken copy) is moved aside to ``<name>.unreadable-<time>`` and
    the run starts from scratch with a warning naming both paths; one holding more than tensors and plain data is
    refused (:func:`svf.files.torch_load`)."""
    if not path.is_file():
        return None
    try:
        saved = files.torch_load(path, "training checkpoint", "delete it to start the cell afresh")
    except files.UnreadableFileError as exc:
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        print(f"WARNING: {exc}\nWARNING: moved it to {aside}; training {path.parent} from scratch", file=sys.stderr)
        return None
    if saved.get("spec") != spec:
        print(f"checkpoint {path} was made with a different spec; starting from scratch", file=sys.stderr)
        return None
    load_state(saved["state"])
    optimizer.load_state_dict(saved["optimizer"])
    return TrainState(**saved["train"])


def write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, buffer.getvalue())


@dataclass
class Run:
    """One training run for :func:`fit`: what to step, how to validate and what to save."""

    name: str                            # for messages (cell id, base learner id)
    spec: dict                           # a checkpoint only resumes a run of the identical spec
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loader: object                       # DataLoader over a dataset with set_epoch(epoch)
    step: Callable                       # batch -> loss tensor (forward only)
    validate: Callable                   # (epoch) -> score to maximise
    get_state: Callable                  # () -> tensors to checkpoint / keep as "best"
    load_state: Callable                 # (tensors) -> None
    on_epoch_start: Callable             # () -> None (train mode, BN mode)
    epochs: int
    seed: int
    checkpoint: Path
    early_stop: int | None = None
    mid_epoch_val: bool = False
    mid_val_resets_early_stop: bool = False  # a new best found mid-epoch restarts the early-stop count
    precision: Precision = Precision()
    micro_batch: int | None = None       # images per forward/backward (None: the whole batch); see batching.py
    nan_check_every: int = 50            # steps between the (host-syncing) checks for a non-finite loss
    val_every: int = 1                   # validate after every k-th epoch and the last (1: every epoch, theirs)
    device: torch.device = torch.device("cpu")


class Hook:
    """Called by :func:`fit` after every validation (``mid``: the mid-epoch one) and after every finished epoch."""

    def validated(self, run: "Run", state: TrainState, epoch: int, improved: bool, mid: bool) -> None:
        pass

    def epoch_done(self, run: "Run", state: TrainState) -> None:
        pass


class KeepBest(Hook):
    """The trained tensors of the best validation so far (the authors keep the best epoch's checkpoint)."""

    def validated(self, run, state, epoch, improved, mid):
        if improved:
            state.best_state = run.get_state()


class EarlyStop(Hook):
    """The authors' ``keep_epoch``: +1 per epoch, 0 after a new best at the epoch's end (with
    ``run.mid_val_resets_early_stop``, as train_BAM.py, also after one mid-epoch); stop at ``run.early_stop``."""

    def __init__(self):
        self.reset_mid_epoch = False

    def validated(self, run, state, epoch, improved, mid):
        if mid:
            self.reset_mid_epoch = self.reset_mid_epoch or (improved and run.mid_val_resets_early_stop)
            return
        reset, self.reset_mid_epoch = improved or self.reset_mid_epoch, False
        state.epochs_without_best = 0 if reset else state.epochs_without_best + 1

    def epoch_done(self, run, state):
        state.stopped = run.early_stop is not None and state.epochs_without_best >= int(run.early_stop)
        if state.stopped:
            print(f"[{run.name}] early stop: {run.early_stop} epochs without a new best", file=sys.stderr)


class Checkpoint(Hook):
    """``run.checkpoint`` after every finished epoch (after :class:`EarlyStop`, so a stop is saved too)."""

    def epoch_done(self, run, state):
        save_checkpoint(run.checkpoint, run.spec, run.get_state(), run.optimizer, state)


def default_hooks() -> list[Hook]:
    return [KeepBest(), EarlyStop(), Checkpoint()]


def fit(run: Run, hooks: list[Hook] | None = None) -> TrainState:
    """Train with a validation after every epoch; ``hooks`` (default: best state, early stop, checkpoint) see every
    validation and every finished epoch. Resumes from ``run.checkpoint`` when it holds the same spec."""
    hooks = default_hooks() if hooks is None else hooks
    state = load_checkpoint(run.checkpoint, run.spec, run.load_state, run.optimizer) or TrainState()
    if state.epoch:
        print(f"[{run.name}] resuming after epoch {state.epoch} from {run.checkpoint}", file=sys.stderr)
    steps = len(run.loader)
    scaler = run.precision.scaler(run.device)

    def validation(epoch: int, mid: bool) -> float:
        score = float(run.validate(epoch))
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
        run.on_epoch_start()
        losses: list[torch.Tensor] = []  # on the device: no host sync per step
        for step, batch in enumerate(progress_bar(run.loader, f"{run.name} epoch {epoch + 1}/{run.epochs}")):
            run.schedule.set(state.iteration)
            batch = run.precision.prepare_batch(to_device(batch, run.device))
            losses.append(train_step(run.optimizer, batch, run.step, run.micro_batch, run.precision, scaler, run.device))
            state.iteration += 1
            if (step + 1) % run.nan_check_every == 0 or step + 1 == steps:
                _check_finite(losses, run.name, epoch, steps)
            if run.mid_epoch_val and epoch > 0 and step == round(steps / 2):
                # the authors' sub-epoch validation: `epoch > 0 and i == round(len(train_loader) / 2)`
                validation(epoch, mid=True)
                run.on_epoch_start()
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
