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
from ...pipeline.paths import TRAIN_LOG
from ...pipeline.spec_types import BaseLearnerSpec
from .build import load_weights_file
from ..loop.device import setup_process
from .loaders import loader_workers, train_aug
from ..loop.batching import Grouping
from ..loop.precision import Precision
from ..loop.schedule import LRSchedule, resolve_schedule
from ..loop.fit import Run, final_state, fit, seed_everything, write_log
from ..loop.device import to_device


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


def train_base_learner(spec: BaseLearnerSpec, dataset_root: str, weights: str | None, out: str, checkpoint_dir: str,
                       threads: int | None = None, device: str = "auto") -> dict:
    dev = setup_process(threads, device, spec.deterministic)
    recipe, seed, name = spec.recipe, spec.seed, spec.name
    seed_everything(seed)
    model = build_base_learner(**spec.model.kwargs())
    if weights is not None:
        load_weights_file(model, weights)
    precision = Precision.of(recipe)
    model = precision.place(model, dev)
    grouping = Grouping.of(recipe)
    train_set, val_set = base_datasets(
        dataset_root, spec.fold, train_aug=train_aug(recipe), val_size=recipe.val_size, seed=seed,
        max_items=recipe.max_episodes_per_epoch, coco_split=spec.data.coco_split,
        exif_orientation=spec.data.exif_orientation, val_images=recipe.base_val_images)
    workers = loader_workers(dev.type)
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=False, drop_last=True,
                        num_workers=workers, collate_fn=collate_episodes)
    val_loader = DataLoader(val_set, batch_size=8, shuffle=False, num_workers=workers, collate_fn=collate_episodes)
    if len(loader) == 0:
        raise ValueError(f"{name}: the training list gives no full batch of {recipe.batch_size}")
    lr = recipe.base_lr
    backbone = [p for s in STAGES for p in getattr(model, s).parameters()]
    head = [p for m in model.head_modules() for p in m.parameters()]
    optimizer = torch.optim.SGD(
        [{"params": backbone, "lr": lr * recipe.backbone_lr_mult, "name": "backbone"},
         {"params": head, "lr": lr, "name": "head"}],
        lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    epochs = recipe.epochs
    schedule = LRSchedule(optimizer, resolve_schedule(recipe.schedule, True), max_iter=epochs * len(loader),
                          power=recipe.poly_power, scale=recipe.poly_scale)
    classes = model.num_base_classes + 1

    def step(chunk):
        return grouping.loss(lambda out, part: cross_entropy(out["logits"], part["label"]),
                             {"logits": model(chunk["image"])}, chunk)

    def state():
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    run = Run(name=name, spec=spec.to_json(), optimizer=optimizer, schedule=schedule, loader=loader, step=step,
              validate=lambda epoch: base_class_miou(*segmentation_counts(model, val_loader, dev, classes)),
              get_state=state, load_state=lambda tensors: model.load_state_dict(tensors),
              on_epoch_start=lambda: model.train(), epochs=epochs, seed=seed,
              checkpoint=Path(checkpoint_dir) / "last.pt", early_stop=recipe.early_stop,
              precision=precision, micro_batch=grouping.micro, device=dev)
    result = fit(run)
    kept, kept_epoch = final_state(result, recipe.select, state())
    atomic.torch_save(out, kept)
    write_log(Path(out).with_name(TRAIN_LOG), result.log_rows)
    return {"epoch": kept_epoch, "val_miou": result.best_miou}
