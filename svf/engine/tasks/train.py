"""Training of one cell on top of the loop of svf/engine/loop/fit.py (checkpoint every epoch, exact resume).

The cell follows the authors' SVF training scripts: SGD (momentum 0.9, weight decay 1e-4) on the policy's param
groups (backbone at 1/10 of the head), the recipe's schedule, BN frozen in eval mode unless the policy says
otherwise, validation on the fold's test episodes after every epoch (their best-epoch selection; `select: last`
keeps the final epoch instead), and early stopping after `early_stop` epochs without a new best.

The set-up (seed, precision, SGD groups, schedule, hooks) is the runner's (svf/engine/loop/runner.py); this module
gives it the cell (:class:`CellTraining`) and writes the cell's files. Checkpoints: ``<checkpoint-dir>/last.pt``
(svf/engine/loop/fit.py says why a resumed run ends exactly like an uninterrupted one).
"""
from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from ... import files
from ...decompose import count_parameters, load_trainable_state_dict, merge, singular_values
from ...pipeline.paths import CHECKPOINT, MODEL, SINGULAR_VALUES, TRAIN_LOG, TRAIN_SUMMARY
from ...pipeline.spec_types import CellSpec
from ...policy import param_groups, set_bn_mode
from ..loop.batching import Grouping
from ..loop.device import library_versions, setup_process
from ..loop.fit import DeviceMemoryError, NonFiniteLossError, write_log
from ..loop.precision import Precision
from ..loop.runner import RunSettings, Trained, train
from .build import build_cell_model, trained_state
from .feature_cache import ValidationCache, backbone_is_frozen, backbone_trains
from .loaders import fold_novel_classes, train_loader, validation_loader
from .scoring import forward, score_episodes

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


class CellTraining:
    """A cell as the runner's task (svf/engine/loop/runner.py): its network with the policy applied, its episodes,
    its validation (from cached backbone inputs when the backbone is frozen) and the tensors it trains."""

    def __init__(self, spec: CellSpec, dataset_root: str, splits_dir: str, weights: str | None,
                 base_learner: str | None):
        self.spec, self.root, self.splits, self.weights, self.base_learner = (spec, dataset_root, splits_dir, weights,
                                                                              base_learner)

    def build(self) -> nn.Module:
        model, self.policy = build_cell_model(self.spec, self.weights, self.base_learner)
        self.sv_before = {k: v.tolist() for k, v in singular_values(model).items()}
        return model

    def prepare(self, model: nn.Module, precision: Precision, grouping: Grouping, device) -> None:
        spec = self.spec
        self.model, self.precision, self.device = model, precision, device
        self.step = cell_step(model, grouping)
        self.loader = train_loader(spec, self.root, self.splits)
        self.val_loader = validation_loader(spec, self.root, self.splits)
        self.classes = fold_novel_classes(spec)
        if spec.cell.method == "bam":
            model.share_frozen_backbone()  # frozen BAM: the base learner reads the query's layer4 (same tensors)
        cache_gb = spec.recipe.val_cache_gb
        self.cache = ValidationCache(cache_gb) if cache_gb > 0 and backbone_is_frozen(model, self.policy) else None

    def param_groups(self, recipe) -> list[dict]:
        return param_groups(self.model, self.policy, lr=recipe.base_lr, backbone_lr_mult=recipe.backbone_lr_mult,
                            weight_decay=recipe.weight_decay, head_params=head_parameters(self.model))

    def backbone_trains(self) -> bool:
        return backbone_trains(self.model)

    def validate(self, epoch: int) -> float:
        absent = self.spec.evaluation.absent_class
        if self.cache is None:
            return validate(self.model, self.val_loader, self.device, self.classes, absent,
                            f"val {epoch + 1}/{self.spec.recipe.epochs}", self.precision)
        return 100.0 * self.cache.score(self.model, self.val_loader, self.device, self.classes, absent,
                                        self.precision).miou()

    def state(self) -> dict:
        return trained_state(self.model, self.policy)

    def load(self, tensors: dict) -> None:
        load_trainable_state_dict(self.model, tensors)

    def train_mode(self) -> None:
        self.model.train()
        set_bn_mode(self.model, self.policy)


def train_cell(spec: CellSpec, dataset_root: str, splits_dir: str, weights: str | None, out_dir: str,
               checkpoint_dir: str, base_learner: str | None = None, config_hash: str = "", threads: int | None = None,
               device: str = "auto", code_version: str = "") -> dict:
    """Train one cell and write model.pt, train_log.csv, singular_values.json and train_summary.json."""
    dev = setup_process(threads, device, spec.deterministic)
    grouping = Grouping.of(spec.recipe)
    settings = RunSettings(
        spec.cell_id, spec.to_json(), spec.recipe, spec.seed, Path(checkpoint_dir) / CHECKPOINT,
        mid_val_resets_early_stop=MID_VAL_RESETS_EARLY_STOP[spec.cell.method],
        memory_advice=f"lower the recipe's micro_batch (now {grouping.micro} images per forward; it must stay a "
                      f"multiple of {grouping.group}) or evaluation/validation sizes")
    task = CellTraining(spec, dataset_root, splits_dir, weights, base_learner)
    trained = train(settings, task, dev)
    # The checkpoint stays: a rerun with the same spec (outputs lost) finishes at once instead of retraining.
    return write_cell(Path(out_dir), spec, task, trained, dev, config_hash, code_version)


def write_cell(out: Path, spec: CellSpec, task: CellTraining, trained: Trained, dev, config_hash: str,
               code_version: str) -> dict:
    """model.pt (the kept tensors), train_log.csv, singular_values.json and train_summary.json of a trained cell."""
    state, model = trained.state, task.model
    sv_after = {k: v.tolist() for k, v in singular_values(model).items()}
    files.torch_save(out / MODEL, {"cell_id": spec.cell_id, "cell": spec.cell.as_dict(), "policy": task.policy.name,
                                   "epoch": trained.kept_epoch, "state": trained.kept})
    write_log(out / TRAIN_LOG, state.log_rows)
    files.write_json(out / SINGULAR_VALUES, {"before": task.sv_before, "after": sv_after})
    summary = {
        "cell": spec.cell.as_dict(), "cell_id": spec.cell_id, "epochs_run": state.epoch,
        "best_epoch": state.best_epoch + 1, "selected_epoch": trained.kept_epoch, "best_val_miou": state.best_miou,
        "select": spec.recipe.select, "train_wall_time_s": round(state.wall_time_s, 3),
        "trainable_params": count_parameters(model, True), "device": dev.type, "config_hash": config_hash,
        "code_version": code_version, "versions": library_versions(dev),
        "steps_per_epoch": trained.steps_per_epoch, "schedule": trained.schedule,
        "spec": spec.to_json(),  # what a results bundle records as the cell's spec (svf/bundle/export.py)
    }
    files.write_json(out / TRAIN_SUMMARY, summary)
    return summary


# the loop's errors are part of the cell trainer's interface (callers catch them from here)
__all__ = ["CellTraining", "DeviceMemoryError", "MID_VAL_RESETS_EARLY_STOP", "NonFiniteLossError", "backbone_trains",
           "cell_step", "head_parameters", "train_cell", "validate"]
