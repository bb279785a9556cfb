"""Training of one cell on top of the loop of svf/engine/loop/fit.py (checkpoint every epoch, exact resume).

The cell follows the authors' SVF training scripts: SGD (momentum 0.9, weight decay 1e-4) on the policy's param
groups (backbone at 1/10 of the head), the recipe's schedule, BN frozen in eval mode unless the policy says
otherwise, validation on the fold's test episodes after every epoch (their best-epoch selection; `select: last`
keeps the final epoch instead), and early stopping after `early_stop` epochs without a new best.

Checkpoints: ``<checkpoint-dir>/last.pt`` (svf/engine/loop/fit.py says what it holds and why a resumed run ends exactly
like an uninterrupted one).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ... import files
from ...decompose import count_parameters, load_trainable_state_dict, merge, singular_values
from ...policy import param_groups, set_bn_mode
from ...pipeline.paths import MODEL, SINGULAR_VALUES, TRAIN_LOG, TRAIN_SUMMARY
from ...pipeline.spec_types import CellSpec
from ..loop.batching import Grouping
from .feature_cache import ValidationCache, backbone_is_frozen, backbone_trains
from .build import build_cell_model, trained_state
from ..loop.device import library_versions, setup_process
from .loaders import fold_novel_classes, train_loader, validation_loader
from ..loop.precision import Precision
from ..loop.fit import (DeviceMemoryError, NonFiniteLossError, Run, final_state, fit, out_of_memory, seed_everything,
                   write_log)
from .scoring import forward, score_episodes
from ..loop.schedule import LRSchedule, resolve_schedule

# Whether a new best at the mid-epoch validation (COCO) restarts the early-stop count, per the authors' script of
# each method: train_aspp.py (baseline) and train_pfenet.py do not reset keep_epoch there, train_BAM.py does.
MID_VAL_RESETS_EARLY_STOP = {"baseline": False, "pfenet": False, "bam": True}


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.head_modules() for p in m.parameters() if p.requires_grad]


def cell_step(model: nn.Module, grouping: Grouping):
    """A cell's training loss of a (micro-)batch: the model's loss per loss group, as the authors' per-GPU loss."""
    return lambda chunk: grouping.loss(lambda out, part: model.loss(out, part)[0], forward(model, chunk), chunk)


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy with SVD layers folded back into plain convs: same outputs, faster evaluation."""
    return merge(copy.deepcopy(model))


def validate(model, loader, device, classes, absent_class, desc, precision: Precision = Precision()) -> float:
    return 100.0 * score_episodes(merged_copy(model), loader, device, classes, absent_class, desc,
                                  precision).miou()


def train_cell(spec: CellSpec, dataset_root: str, splits_dir: str, weights: str | None, out_dir: str,
               checkpoint_dir: str, base_learner: str | None = None, config_hash: str = "", threads: int | None = None,
               device: str = "auto", code_version: str = "") -> dict:
    """Train one cell and write model.pt, train_log.csv, singular_values.json and train_summary.json."""
    dev = setup_process(threads, device, spec.deterministic)
    cell, recipe, cell_id = spec.cell, spec.recipe, spec.cell_id
    seed = spec.seed
    seed_everything(seed)
    model, policy = build_cell_model(spec, weights, base_learner)
    sv_before = {k: v.tolist() for k, v in singular_values(model).items()}
    precision = Precision.of(recipe)
    model = precision.place(model, dev)
    grouping = Grouping.of(recipe)

    lr = recipe.base_lr
    groups = param_groups(model, policy, lr=lr, backbone_lr_mult=recipe.backbone_lr_mult,
                          weight_decay=recipe.weight_decay, head_params=head_parameters(model))
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    loader = train_loader(spec, dataset_root, splits_dir)
    if len(loader) == 0:
        raise ValueError(f"cell {cell_id}: the training list gives no full batch of {recipe.batch_size}")
    epochs = recipe.epochs
    schedule = LRSchedule(optimizer, resolve_schedule(recipe.schedule, backbone_trains(model)),
                          max_iter=epochs * len(loader), power=recipe.poly_power, scale=recipe.poly_scale)
    classes = fold_novel_classes(spec)
    val_loader = validation_loader(spec, dataset_root, splits_dir)
    absent = spec.evaluation.absent_class
    if cell.method == "bam":
        model.share_frozen_backbone()  # frozen BAM: the base learner reads the query's layer4 (same tensors)
    cache_gb = recipe.val_cache_gb
    cache = ValidationCache(cache_gb) if cache_gb > 0 and backbone_is_frozen(model, policy) else None

    def validate_epoch(epoch: int) -> float:
        if cache is None:
            return validate(model, val_loader, dev, classes, absent, f"val {epoch + 1}/{epochs}", precision)
        return 100.0 * cache.score(model, val_loader, dev, classes, absent, precision).miou()

    def on_epoch_start():
        model.train()
        set_bn_mode(model, policy)

    run = Run(
        name=cell_id, spec=spec.to_json(), optimizer=optimizer, schedule=schedule, loader=loader,
        step=cell_step(model, grouping),
        validate=validate_epoch,
        get_state=lambda: trained_state(model, policy),
        load_state=lambda tensors: load_trainable_state_dict(model, tensors),
        on_epoch_start=on_epoch_start, epochs=epochs, seed=seed, checkpoint=Path(checkpoint_dir) / "last.pt",
        early_stop=recipe.early_stop, mid_epoch_val=recipe.mid_epoch_val,
        mid_val_resets_early_stop=MID_VAL_RESETS_EARLY_STOP[cell.method], precision=precision,
        val_every=recipe.val_every,
        micro_batch=grouping.micro, device=dev)
    try:
        state = fit(run)
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory(cell_id, dev, f"lower the recipe's micro_batch (now {grouping.micro} images per forward; "
                                          f"it must stay a multiple of {grouping.group}) or evaluation/validation sizes") from None

    kept, kept_epoch = final_state(state, recipe.select, trained_state(model, policy))
    load_trainable_state_dict(model, kept)
    sv_after = {k: v.tolist() for k, v in singular_values(model).items()}
    out = Path(out_dir)
    files.torch_save(out / MODEL, {"cell_id": cell_id, "cell": cell.as_dict(), "policy": policy.name,
                                   "epoch": kept_epoch, "state": kept})
    write_log(out / TRAIN_LOG, state.log_rows)
    files.write_json(out / SINGULAR_VALUES, {"before": sv_before, "after": sv_after})
    summary = {
        "cell": cell.as_dict(), "cell_id": cell_id, "epochs_run": state.epoch, "best_epoch": state.best_epoch + 1,
        "selected_epoch": kept_epoch, "best_val_miou": state.best_miou, "select": recipe.select,
        "train_wall_time_s": round(state.wall_time_s, 3), "trainable_params": count_parameters(model, True),
        "device": dev.type, "config_hash": config_hash, "code_version": code_version,
        "versions": library_versions(dev),
        "steps_per_epoch": len(loader), "schedule": schedule.kind,
        "spec": spec.to_json(),  # what a results bundle records as the cell's spec (svf/bundle/export.py)
    }
    # The checkpoint stays: a rerun with the same spec (outputs lost) finishes at once instead of retraining.
    files.write_json(out / TRAIN_SUMMARY, summary)
    return summary


# the loop's errors are part of the cell trainer's interface (callers catch them from here)
__all__ = ["DeviceMemoryError", "MID_VAL_RESETS_EARLY_STOP", "NonFiniteLossError", "backbone_trains", "cell_step",
           "head_parameters", "train_cell", "validate"]
