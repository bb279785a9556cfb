"""Training of one cell: one process, one device, checkpoint every epoch, exact resume.

The loop follows the authors' SVF training scripts: SGD (momentum 0.9, weight decay 1e-4) on the policy's param
groups (backbone at 1/10 of the head), the recipe's schedule, BN frozen in eval mode unless the policy says
otherwise, validation on the fold's test episodes after every epoch (their best-epoch selection; `select: last`
keeps the final epoch instead), and early stopping after `early_stop` epochs without a new best.

Resume: ``<checkpoint-dir>/last.pt`` holds the trained tensors, optimizer, best state, log rows, epoch and RNG
states after each finished epoch. Every epoch reseeds from (seed, epoch) as the authors' ``setup_seed(321+epoch)``
does, and data order and augmentation derive from (seed, epoch, index), so a killed run resumed from its last
checkpoint ends with exactly the metrics of an uninterrupted one.
"""
from __future__ import annotations

import copy
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
from torch import nn

from .. import files
from ..decompose import count_parameters, load_trainable_state_dict, merge, singular_values
from ..policy import param_groups, set_bn_mode
from .batching import batch_length, check_grouping, grouped_loss, micro_batches
from .feature_cache import ValidationCache, backbone_is_frozen
from .build import build_cell_model, trained_state
from .device import library_versions, setup_process
from .loaders import eval_loader, fold_novel_classes, train_loader
from .precision import Precision
from .scoring import _progress, forward, score_episodes, to_device  # noqa: F401 - re-exported
from .schedule import LRSchedule, resolve_schedule

LOG_COLUMNS = ("epoch", "step", "loss", "lr_head", "lr_backbone", "val_miou", "time_s")
# Whether a new best at the mid-epoch validation (COCO) restarts the early-stop count, per the authors' script of
# each method: train_aspp.py (baseline) and train_pfenet.py do not reset keep_epoch there, train_BAM.py does.
MID_VAL_RESETS_EARLY_STOP = {"baseline": False, "pfenet": False, "bam": True}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the cell, epoch and step."""


class DeviceMemoryError(RuntimeError):
    """The GPU ran out of memory; the message names the cell and the setting to lower."""


def out_of_memory(name: str, device: torch.device, advice: str) -> DeviceMemoryError:
    held = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return DeviceMemoryError(f"{name}: out of memory on {device} (peak {held:.1f} GiB allocated); {advice}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def backbone_trains(model: nn.Module) -> bool:
    return any(p.requires_grad for k in range(5) for p in getattr(model, f"layer{k}").parameters())


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.head_modules() for p in m.parameters() if p.requires_grad]


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy with SVD layers folded back into plain convs: same outputs, faster evaluation."""
    return merge(copy.deepcopy(model))


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
    device: torch.device = torch.device("cpu")


def fit(run: Run) -> TrainState:
    """Train with per-epoch validation, best-state tracking, early stopping and a checkpoint after every epoch.

    Resumes from ``run.checkpoint`` when it holds the same spec: every epoch reseeds from (seed, epoch) (the
    authors' setup_seed(manual_seed + epoch)) and the data of an epoch depends on (seed, epoch) only, so a resumed
    run ends exactly like an uninterrupted one.
    """
    state = load_checkpoint(run.checkpoint, run.spec, run.load_state, run.optimizer) or TrainState()
    if state.epoch:
        print(f"[{run.name}] resuming after epoch {state.epoch} from {run.checkpoint}", file=sys.stderr)
    steps = len(run.loader)
    scaler = run.precision.scaler(run.device)

    def validation(epoch: int) -> tuple[float, bool]:
        score = float(run.validate(epoch))
        improved = score > state.best_miou
        if improved:
            state.best_miou, state.best_epoch = score, epoch
            state.best_state = run.get_state()
        return score, improved

    while state.epoch < run.epochs and not state.stopped:
        epoch = state.epoch
        started = time.time()
        seed_everything(run.seed + epoch)
        run.loader.dataset.set_epoch(epoch)
        run.on_epoch_start()
        reset_mid_epoch = False
        losses: list[torch.Tensor] = []  # on the device: no host sync per step
        for step, batch in enumerate(_progress(run.loader, f"{run.name} epoch {epoch + 1}/{run.epochs}")):
            run.schedule.set(state.iteration)
            batch = run.precision.prepare_batch(to_device(batch, run.device))
            run.optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=run.device)
            for chunk in micro_batches(batch, run.micro_batch or batch_length(batch)):
                with run.precision.autocast(run.device):
                    loss = run.step(chunk)
                scaler.scale(loss).backward()
                total += loss.detach().float()
            scaler.step(run.optimizer)
            scaler.update()
            state.iteration += 1
            losses.append(total)
            if (step + 1) % run.nan_check_every == 0 or step + 1 == steps:
                _check_finite(losses, run.name, epoch, steps)
            if run.mid_epoch_val and epoch > 0 and step == round(steps / 2):
                # the authors' sub-epoch validation: `epoch > 0 and i == round(len(train_loader) / 2)`
                _, improved = validation(epoch)
                reset_mid_epoch = reset_mid_epoch or (improved and run.mid_val_resets_early_stop)
                run.on_epoch_start()
        mean_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        score, improved = validation(epoch)
        # their keep_epoch: +1 per epoch, 0 after a new best at the epoch's end (BAM's script: also mid-epoch)
        state.epochs_without_best = 0 if improved or reset_mid_epoch else state.epochs_without_best + 1
        elapsed = time.time() - started
        state.wall_time_s += elapsed
        lrs = group_lrs(run.optimizer)  # the rates of the epoch's last step
        state.log_rows.append({
            "epoch": epoch + 1, "step": state.iteration, "loss": mean_loss,
            "lr_head": lrs.get("head", ""), "lr_backbone": lrs.get("backbone", ""),
            "val_miou": score, "time_s": round(elapsed, 3),
        })
        print(f"[{run.name}] epoch {epoch + 1}/{run.epochs} loss {mean_loss:.4f} val {score:.2f} "
              f"(best {state.best_miou:.2f} @ {state.best_epoch + 1}) {elapsed:.1f}s", file=sys.stderr, flush=True)
        state.epoch = epoch + 1
        state.stopped = run.early_stop is not None and state.epochs_without_best >= int(run.early_stop)
        save_checkpoint(run.checkpoint, run.spec, run.get_state(), run.optimizer, state)
        if state.stopped:
            print(f"[{run.name}] early stop: {run.early_stop} epochs without a new best", file=sys.stderr)
    return state


def _check_finite(losses: list[torch.Tensor], name: str, epoch: int, steps: int) -> None:
    """One host sync for the steps so far: the first non-finite loss stops the run, naming epoch and step."""
    values = torch.stack(losses)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        raise NonFiniteLossError(f"{name}: loss is {float(values[first])} at epoch {epoch + 1}, step "
                                 f"{first + 1}/{steps}; stopping, no metrics were written")


def validate(model, loader, device, classes, absent_class, desc, precision: Precision = Precision()) -> float:
    return 100.0 * score_episodes(merged_copy(model), loader, device, classes, absent_class, desc,
                                  precision).miou()


def group_lrs(optimizer) -> dict[str, float]:
    return {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}


def final_state(state: TrainState, select: str, current: dict) -> tuple[dict, int]:
    """The state to keep (best validation epoch or the last one) and its 1-based epoch."""
    if select == "best" and state.best_state is not None:
        return state.best_state, state.best_epoch + 1
    return current, state.epoch


def train_cell(spec: dict, dataset_root: str, splits_dir: str, weights: str | None, out_dir: str,
               checkpoint_dir: str, base_learner: str | None = None, config_hash: str = "", threads: int | None = None,
               device: str = "auto", code_version: str = "") -> dict:
    """Train one cell and write model.pt, train_log.csv, singular_values.json and train_summary.json."""
    dev = setup_process(threads, device, bool(spec.get("deterministic", False)))
    cell, recipe, cell_id = spec["cell"], spec["recipe"], spec["cell_id"]
    seed = int(spec["seed"])
    seed_everything(seed)
    model, policy = build_cell_model(spec, weights, base_learner)
    sv_before = {k: v.tolist() for k, v in singular_values(model).items()}
    precision = Precision.of(recipe)
    precision.configure()
    model = precision.prepare_model(model.to(dev))
    group, micro = check_grouping(int(recipe["batch_size"]), int(recipe.get("loss_groups", 1)),
                                  recipe.get("micro_batch"))

    lr = float(recipe["base_lr"])
    groups = param_groups(model, policy, lr=lr, backbone_lr_mult=float(recipe["backbone_lr_mult"]),
                          weight_decay=float(recipe["weight_decay"]), head_params=head_parameters(model))
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=float(recipe["momentum"]),
                                weight_decay=float(recipe["weight_decay"]))
    loader = train_loader(spec, dataset_root, splits_dir)
    if len(loader) == 0:
        raise ValueError(f"cell {cell_id}: the training list gives no full batch of {recipe['batch_size']}")
    epochs = int(recipe["epochs"])
    schedule = LRSchedule(optimizer, resolve_schedule(recipe["schedule"], backbone_trains(model)),
                          max_iter=epochs * len(loader), power=recipe["poly_power"], scale=recipe["poly_scale"])
    classes = fold_novel_classes(spec)
    # Validation episodes are the same for every training seed (older specs have no val_seed: the one seed).
    val_loader = eval_loader(spec, dataset_root, splits_dir, n_episodes=int(recipe["val_episodes"]),
                             seed=int(spec.get("val_seed", seed)))
    absent = spec["evaluation"].get("absent_class", "zero")
    if cell["method"] == "bam":
        model.share_frozen_backbone()  # frozen BAM: the base learner reads the query's layer4 (same tensors)
    cache_gb = float(recipe.get("val_cache_gb", 16.0) or 0)
    cache = ValidationCache(cache_gb) if cache_gb > 0 and backbone_is_frozen(model, policy) else None

    def validate_epoch(epoch: int) -> float:
        if cache is None:
            return validate(model, val_loader, dev, classes, absent, f"val {epoch + 1}/{epochs}", precision)
        return 100.0 * cache.score(model, val_loader, dev, classes, absent, precision).miou()

    def step(chunk):
        return grouped_loss(lambda out, part: model.loss(out, part)[0], forward(model, chunk), chunk, group,
                            int(recipe.get("loss_groups", 1)))

    def on_epoch_start():
        model.train()
        set_bn_mode(model, policy)

    run = Run(
        name=cell_id, spec=spec, optimizer=optimizer, schedule=schedule, loader=loader, step=step,
        validate=validate_epoch,
        get_state=lambda: trained_state(model, policy),
        load_state=lambda tensors: load_trainable_state_dict(model, tensors),
        on_epoch_start=on_epoch_start, epochs=epochs, seed=seed, checkpoint=Path(checkpoint_dir) / "last.pt",
        early_stop=recipe.get("early_stop"), mid_epoch_val=bool(recipe.get("mid_epoch_val")),
        mid_val_resets_early_stop=MID_VAL_RESETS_EARLY_STOP[cell["method"]], precision=precision,
        micro_batch=micro, device=dev)
    try:
        state = fit(run)
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory(cell_id, dev, f"lower the recipe's micro_batch (now {micro} images per forward; it must "
                                          f"stay a multiple of {group}) or evaluation/validation sizes") from None

    kept, kept_epoch = final_state(state, recipe["select"], trained_state(model, policy))
    load_trainable_state_dict(model, kept)
    sv_after = {k: v.tolist() for k, v in singular_values(model).items()}
    out = Path(out_dir)
    files.torch_save(out / "model.pt", {"cell_id": cell_id, "cell": cell, "policy": policy.name,
                                         "epoch": kept_epoch, "state": kept})
    write_log(out / "train_log.csv", state.log_rows)
    files.write_json(out / "singular_values.json", {"before": sv_before, "after": sv_after})
    summary = {
        "cell": cell, "cell_id": cell_id, "epochs_run": state.epoch, "best_epoch": state.best_epoch + 1,
        "selected_epoch": kept_epoch, "best_val_miou": state.best_miou, "select": recipe["select"],
        "train_wall_time_s": round(state.wall_time_s, 3), "trainable_params": count_parameters(model, True),
        "device": dev.type, "config_hash": config_hash, "code_version": code_version,
        "versions": library_versions(dev),
        "steps_per_epoch": len(loader), "schedule": schedule.kind,
    }
    # The checkpoint stays: a rerun with the same spec (outputs lost) finishes at once instead of retraining.
    files.write_json(out / "train_summary.json", summary)
    return summary
