"""A run's ``last.pt``: the trained tensors, optimizer, best state, log rows, epoch and RNG states after each
finished epoch, and its restore. A checkpoint resumes only a run of the identical spec (the JSON the run was given).
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ... import files
from .fit import TrainState


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


__all__ = ["load_checkpoint", "save_checkpoint"]
