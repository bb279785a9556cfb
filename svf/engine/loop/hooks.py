"""What :func:`svf.engine.loop.fit.fit` hands every validation and every finished epoch to, each hook with its own
settings: :class:`KeepBest` (the best state, the authors' best-epoch selection), :class:`EarlyStop` (their
``stop_interval``) and :class:`Checkpoint` (``last.pt`` after each epoch, and the resume from it)."""
from __future__ import annotations

import sys
from pathlib import Path

from .checkpoint import load_checkpoint, save_checkpoint
from .fit import Hook, Run, TrainState


class KeepBest(Hook):
    """The trained tensors of the best validation so far (the authors keep the best epoch's checkpoint)."""

    def validated(self, run, state, epoch, improved, mid):
        if improved:
            state.best_state = run.trainee.state()


class EarlyStop(Hook):
    """The authors' ``keep_epoch``: +1 per epoch, 0 after a new best at the epoch's end (with
    ``mid_val_resets``, as train_BAM.py, also after one mid-epoch); stop after ``patience`` epochs without one
    (None: never)."""

    def __init__(self, patience: int | None, mid_val_resets: bool = False):
        self.patience, self.mid_val_resets = patience, mid_val_resets
        self.reset_mid_epoch = False

    def validated(self, run, state, epoch, improved, mid):
        if mid:
            self.reset_mid_epoch = self.reset_mid_epoch or (improved and self.mid_val_resets)
            return
        reset, self.reset_mid_epoch = improved or self.reset_mid_epoch, False
        state.epochs_without_best = 0 if reset else state.epochs_without_best + 1

    def epoch_done(self, run, state):
        state.stopped = self.patience is not None and state.epochs_without_best >= int(self.patience)
        if state.stopped:
            print(f"[{run.name}] early stop: {self.patience} epochs without a new best", file=sys.stderr)


class Checkpoint(Hook):
    """``path`` after every finished epoch (after :class:`EarlyStop`, so a stop is saved too); a run starts from it
    when it holds the same ``spec`` (JSON)."""

    def __init__(self, path: Path, spec: dict):
        self.path, self.spec = Path(path), spec

    def resume(self, run: Run) -> TrainState | None:
        state = load_checkpoint(self.path, self.spec, run.trainee.load, run.optimizer)
        if state is not None and state.epoch:
            print(f"[{run.name}] resuming after epoch {state.epoch} from {self.path}", file=sys.stderr)
        return state

    def epoch_done(self, run, state):
        save_checkpoint(self.path, self.spec, run.trainee.state(), run.optimizer, state)


__all__ = ["Checkpoint", "EarlyStop", "KeepBest"]
