"""BAM's stage 1: the PSPNet base learner of one (dataset, backbone, fold), trained on the base classes.

As BAM's train_base.py: the whole training list (novel-class pixels relabelled background), the recipe
``bam-base`` (417 crop, scale 0.5-2.0, poly; PASCAL backbone at base_lr and PPM/cls at 10x, COCO all at 10x), every
parameter trained with BatchNorm in train mode, after every epoch the mIoU over the base classes only (background
excluded; a base class absent from the val list counts 0: BAM's ``validate()`` returns ``class_miou``) on the val
list, the best epoch kept, and a stop after ``early_stop`` epochs without a new best (its ``stop_interval: 75``).
The output is the full PSPNet state dict, which BAM cells load with ``load_base_learner``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ... import files as atomic
from ...backbones.base import STAGES
from ...labels import IGNORE_LABEL
from ...data.episodes import base_datasets, collate_episodes
from ...models import build_base_learner
from ...models.common import cross_entropy
from ...pipeline.paths import CHECKPOINT, TRAIN_LOG
from ...pipeline.spec_types import BaseLearnerSpec
from .build import load_weights_file
from ..loop.batching import Grouping
from ..loop.device import setup_process, to_device
from ..loop.fit import write_log
from ..loop.precision import Precision
from ..loop.runner import RunSettings, train
from .loaders import loader_workers, train_aug


def base_class_miou(intersection: torch.Tensor, union: torch.Tensor) -> float:
    """BAM's stage-1 score (percent): mean over the base classes 1..C-1 of intersection / (union + 1e-10), summed
    over the whole val list; background (class 0) is left out and an absent class scores 0."""
    iou = intersection[1:].double() / (union[1:].double() + 1e-10)
    return float(100.0 * iou.mean()) if len(iou) else 0.0


@torch.no_grad()
def segmentation_counts(model: nn.Module, loader, device: torch.device, num_classes: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class intersection and union (classes 0..num_classes-1) accumulated over the whole val list."""
    model.eval()
    inter = torch.zeros(num_classes, dtype=torch.float64, device=device)
    union = torch.zeros(num_classes, dtype=torch.float64, device=device)
    for batch in loader:
        batch = to_device(batch, device)
        pred = model(batch["image"]).argmax(1)
        label = batch["label"]
        valid = label != IGNORE_LABEL
        p, t = pred[valid], label[valid]

        def count(values):
            return torch.bincount(values, minlength=num_classes)[:num_classes].double()

        hit = count(t[p == t])
        inter += hit
        union += count(p) + count(t) - hit
    return inter.cpu(), union.cpu()


def base_step(model: nn.Module, grouping: Grouping):
    """The base learner's training loss of a (micro-)batch: cross-entropy per loss group, as the authors' per GPU."""
    return lambda chunk: grouping.loss(lambda out, part: cross_entropy(out["logits"], part["label"]),
                                       {"logits": model(chunk["image"])}, chunk)


class BaseLearnerTraining:
    """BAM's stage 1 as the runner's task (svf/engine/loop/runner.py): a PSPNet on the whole training list, every
    parameter trained with BatchNorm in train mode, validated on the base classes of the val list."""

    def __init__(self, spec: BaseLearnerSpec, dataset_root: str, weights: str | None):
        self.spec, self.root, self.weights = spec, dataset_root, weights

    def build(self) -> nn.Module:
        model = build_base_learner(**self.spec.model.kwargs())
        if self.weights is not None:
            load_weights_file(model, self.weights)
        return model

    def prepare(self, model: nn.Module, precision: Precision, grouping: Grouping, device: torch.device) -> None:
        spec, recipe = self.spec, self.spec.recipe
        self.model, self.device = model, device
        self.step = base_step(model, grouping)
        train_set, val_set = base_datasets(
            self.root, spec.fold, train_aug=train_aug(recipe), val_size=recipe.val_size, seed=spec.seed,
            max_items=recipe.max_episodes_per_epoch, coco_split=spec.data.coco_split,
            exif_orientation=spec.data.exif_orientation, val_images=recipe.base_val_images)
        workers = loader_workers(device.type)
        self.loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=False, drop_last=True,
                                 num_workers=workers, collate_fn=collate_episodes)
        self.val_loader = DataLoader(val_set, batch_size=8, shuffle=False, num_workers=workers,
                                     collate_fn=collate_episodes)

    def param_groups(self, recipe) -> list[dict]:
        """The backbone at ``backbone_lr_mult`` x the rate, PPM and classifier at the rate (train_base.py)."""
        backbone = [p for s in STAGES for p in getattr(self.model, s).parameters()]
        head = [p for m in self.model.head_modules() for p in m.parameters()]
        return [{"params": backbone, "lr": recipe.base_lr * recipe.backbone_lr_mult, "name": "backbone"},
                {"params": head, "lr": recipe.base_lr, "name": "head"}]

    def backbone_trains(self) -> bool:
        return True

    def validate(self, epoch: int) -> float:
        classes = self.model.num_base_classes + 1
        return base_class_miou(*segmentation_counts(self.model, self.val_loader, self.device, classes))

    def state(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def load(self, tensors: dict) -> None:
        self.model.load_state_dict(tensors)

    def train_mode(self) -> None:
        self.model.train()


def train_base_learner(spec: BaseLearnerSpec, dataset_root: str, weights: str | None, out: str, checkpoint_dir: str,
                       threads: int | None = None, device: str = "auto") -> dict:
    """Train BAM's base learner of ``spec``; writes its state dict to ``out`` and train_log.csv beside it."""
    dev = setup_process(threads, device, spec.deterministic)
    settings = RunSettings(spec.name, spec.to_json(), spec.recipe, spec.seed, Path(checkpoint_dir) / CHECKPOINT)
    trained = train(settings, BaseLearnerTraining(spec, dataset_root, weights), dev)
    atomic.torch_save(out, trained.kept)
    write_log(Path(out).with_name(TRAIN_LOG), trained.state.log_rows)
    return {"epoch": trained.kept_epoch, "val_miou": trained.state.best_miou}
