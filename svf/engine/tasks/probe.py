"""The paper's mechanism, measured: does base training keep what the backbone knows about the novel classes?

The paper's explanation of its ordering: novel classes are recognised with features that come from pretraining;
fine-tuning the backbone on the base classes overfits them and loses what the novel classes need, while training
only the singular values keeps it. A *linear segmentation probe* measures that directly: a multinomial logistic
regression on the backbone's per-pixel features (at the feature map's resolution) tells background and each novel
class of the fold apart; it is fitted on the pixels of the fold's held-out images (svf/data/splits.py: training
images with a novel class, which the dagger setting never trains on) and scored on the pixels of its test images as
the mean IoU over the novel classes. Pixels of other classes and of the 255 border are left out. It runs on the
backbone a cell starts from (before base training: the pretrained weights with the cell's policy applied, exact at
full rank) and on the cell's trained backbone (after), so the difference is what base training did to the novel
classes' separability. (Pooled per-object features separate the synthetic novel classes perfectly before and after,
so an object-level probe has no room to measure; docs/study.md.)

Features (:data:`FEATURES`): ``mid`` = concat(layer3, layer2), what the meta learner reads, and ``layer4``. A
feature pixel's label is the class covering most of it, kept when that share is at least ``MIN_SHARE``. Every step is
deterministic (float64 L-BFGS from zeros), so a probe is a pure function of the two backbones and the data.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ... import console, files
from ...data.datasets import open_dataset
from ...data.images import read_image
from ...data.splits import HOLDOUT, load_fold
from ...data.transforms import eval_transform
from ...models.common import mid_level, resize
from ...pipeline.spec_types import CellSpec
from .build import build_cell_model, load_cell_model
from ..loop.device import setup_process

FEATURES = ("mid", "layer4")
PROBE_TRAIN, PROBE_TEST = HOLDOUT, "val"  # fitted on held-out images' pixels, scored on the test images' pixels
WEIGHT_DECAY = 1e-3  # L2 penalty of the probe on standardised features (fixed in docs/study.md before any run)
MAX_ITER = 100
MIN_SHARE = 0.75  # a feature pixel is labelled with a class that covers at least this share of it
IGNORED = -1


def pixel_labels(label: torch.Tensor, classes, size) -> torch.Tensor:
    """(h, w) labels at feature resolution from a raw (H, W) mask: 0 = background, a novel class id, or IGNORED
    (another class, the 255 border, or no class covering ``MIN_SHARE`` of the pixel)."""
    values = [0, *[int(c) for c in classes]]
    onehot = torch.stack([(label == v).float() for v in values])[None]
    share = F.interpolate(onehot, size=size, mode="area")[0]
    best, index = share.max(0)
    out = torch.tensor(values)[index]
    out[best < MIN_SHARE] = IGNORED
    return out


@torch.no_grad()
def pixel_features(model, source, image_ids, classes, size: int, device: torch.device, batch_size: int = 16
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-pixel backbone features of the images' labelled pixels ({feature name: (P, C) float64}) and their labels
    (P,), both features at layer3's resolution (layer4 has the same with output stride 8)."""
    model.eval()
    feats_out: dict[str, list[torch.Tensor]] = {name: [] for name in FEATURES}
    labels_out = []
    for start in range(0, len(image_ids), batch_size):
        chunk = image_ids[start:start + batch_size]
        pairs = [eval_transform(read_image(source.image_path(i), source.exif_orientation), source.read_mask(i), size)
                 for i in chunk]
        feats = model.query_features(torch.stack([image for image, _ in pairs]).to(device))
        named = {"mid": mid_level(feats[2], feats[3]), "layer4": resize(feats[4], feats[3].shape[-2:])}
        grid = feats[3].shape[-2:]
        labels = torch.stack([pixel_labels(torch.from_numpy(label.astype(np.int64)), classes, grid)
                              for _, label in pairs]).reshape(-1)
        keep = labels != IGNORED
        labels_out.append(labels[keep])
        for name, feat in named.items():
            flat = feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1]).double().cpu()
            feats_out[name].append(flat[keep])
    return {name: torch.cat(v) for name, v in feats_out.items()}, torch.cat(labels_out)


def fit_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float = WEIGHT_DECAY,
              max_iter: int = MAX_ITER) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of an L2-regularised multinomial logistic regression (labels 0..n_classes-1), L-BFGS."""
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def probe_miou(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
               classes, weight_decay: float = WEIGHT_DECAY) -> float:
    """Mean IoU (%) over ``classes`` of the probe fitted on (train_x, train_y), on the test pixels; features are
    standardised with the training pixels' mean and std. Labels are 0 (background) or a class of ``classes``."""
    values = torch.tensor([0, *[int(c) for c in classes]])
    to_index = {int(v): i for i, v in enumerate(values)}
    index = torch.tensor([to_index[int(v)] for v in train_y])
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    weight, bias = fit_probe((train_x - mean) / std, index, len(values), weight_decay)
    predicted = values[(((test_x - mean) / std) @ weight + bias).argmax(1)]
    ious = []
    for c in classes:
        truth, guess = test_y == int(c), predicted == int(c)
        union = int((truth | guess).sum())
        if int(truth.sum()):
            ious.append(int((truth & guess).sum()) / union)
    return 100.0 * float(np.mean(ious)) if ious else float("nan")


def probe_model(model, spec: CellSpec, dataset_root: str, splits_dir: str, device: torch.device
                ) -> dict[str, float]:
    """Probe mIoU (%) per feature of one model's backbone on its cell's fold."""
    cell = spec.cell
    source = open_dataset(dataset_root, exif_orientation=spec.data.exif_orientation)
    novel = spec.classes.novel
    size = spec.recipe.val_size
    sets = {}
    for split in (PROBE_TRAIN, PROBE_TEST):
        images = load_fold(splits_dir, cell.setting, split, cell.fold).images
        if not images:
            raise ValueError(f"cell {spec.cell_id}: the {split} list of fold {cell.fold} in {splits_dir} is "
                             f"empty; the probe needs it")
        sets[split] = pixel_features(model, source, images, novel, size, device)
    (train_f, train_y), (test_f, test_y) = sets[PROBE_TRAIN], sets[PROBE_TEST]
    return {name: probe_miou(train_f[name], train_y, test_f[name], test_y, novel) for name in FEATURES} | {
        "train_pixels": len(train_y), "test_pixels": len(test_y)}


def probe_cell(spec: CellSpec, dataset_root: str, splits_dir: str, weights: str | None, model_file: str, out: str,
               base_learner: str | None = None, threads: int | None = None, device: str = "auto") -> dict:
    """Probe a cell's backbone before base training and after it; writes ``out`` (JSON) and returns it."""
    dev = setup_process(threads, device, spec.deterministic)
    started = time.time()
    before_model, _ = build_cell_model(spec, weights, base_learner)
    before = probe_model(before_model.to(dev), spec, dataset_root, splits_dir, dev)
    after_model, _, _ = load_cell_model(spec, model_file, weights, base_learner)
    after = probe_model(after_model.to(dev), spec, dataset_root, splits_dir, dev)
    result = {"cell": spec.cell.as_dict(), "cell_id": spec.cell_id, "before": before, "after": after,
              "change": {name: after[name] - before[name] for name in FEATURES},
              "wall_time_s": round(time.time() - started, 3)}
    files.write_json(out, result)
    console.result(f"{spec.cell_id}: probe " + ", ".join(
        f"{name} {before[name]:.1f} -> {after[name]:.1f} mIoU" for name in FEATURES))
    return result


__all__ = ["FEATURES", "fit_probe", "pixel_features", "pixel_labels", "probe_cell", "probe_miou", "probe_model"]
