"""The demo's stand-in for ImageNet pretraining: a tiny backbone learns to tell which classes an image contains
(multi-label: cross-entropy against the normalised multi-hot target, which does not collapse to
"nothing present" as a per-class binary loss does with ~3 positives among 100 classes) on the synthetic training images of the given datasets. The few-shot methods
then start from a backbone whose features separate the synthetic classes, as ImageNet features do for real ones.

Output: the backbone's state dict in our key layout (``layer0.0.weight`` ...), loadable like ImageNet weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from .. import io as atomic
from ..backbones import build_backbone
from ..data.datasets import open_dataset
from ..data.episodes import MultiLabelImages
from ..data.splits import load_image_classes
from ..data.transforms import TrainAug
from .device import setup_process
from .train import seed_everything


class _Offset(torch.utils.data.Dataset):
    """Places a dataset's multi-hot target at ``offset`` in a vector covering every dataset's classes."""

    def __init__(self, dataset: MultiLabelImages, offset: int, total: int):
        self.dataset, self.offset, self.total = dataset, offset, total

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        target = torch.zeros(self.total)
        target[self.offset:self.offset + item["target"].numel()] = item["target"]
        return {"image": item["image"], "target": target}


def pretrain_backbone(spec: dict, dataset_roots: list[str], splits_dirs: list[str], out: str,
                      threads: int | None = None, device: str = "auto") -> dict:
    dev = setup_process(threads, device, bool(spec.get("deterministic", False)))
    seed = int(spec["seed"])
    seed_everything(seed)
    model_spec = spec["model"]
    backbone = build_backbone(model_spec["backbone"], width=model_spec["width"], depths=model_spec.get("depths"),
                              stem=model_spec.get("stem", "deep"))
    size = int(spec["size"])
    aug = TrainAug(crop=(size, size), scale=(0.5, 1.0))
    parts, total = [], 0
    for root, splits in zip(dataset_roots, splits_dirs):
        source = open_dataset(root)
        images = MultiLabelImages(source, source.ids("train"), load_image_classes(splits), aug=aug, seed=seed)
        parts.append((images, total))
        total += len(images.classes)
    data = ConcatDataset([_Offset(images, offset, total) for images, offset in parts])
    loader = DataLoader(data, batch_size=int(spec["batch_size"]), shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    head = nn.Linear(backbone.channels["layer4"], total)
    model = nn.ModuleDict({"backbone": backbone, "head": head}).to(dev)
    epochs = int(spec["epochs"])
    optimizer = torch.optim.SGD(model.parameters(), lr=float(spec["lr"]), momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    for epoch in range(epochs):
        for part, _ in parts:
            part.set_epoch(epoch)
        model.train()
        total_loss, correct, seen = 0.0, 0.0, 0
        for batch in loader:
            image, target = batch["image"].to(dev), batch["target"].to(dev)
            logits = head(backbone(image)[-1].mean((2, 3)))
            loss = -(target / target.sum(1, keepdim=True).clamp(min=1) * logits.log_softmax(1)).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(image)
            # top-1 hit: the most likely class is one of those present
            correct += target.gather(1, logits.argmax(1, keepdim=True)).sum().item()
            seen += len(image)
        print(f"pretrain {model_spec['backbone']} epoch {epoch + 1}/{epochs}: loss {total_loss / seen:.4f} "
              f"top-1 in labels {correct / seen:.3f}", flush=True)
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    atomic.torch_save(out, state)
    return {"loss": total_loss / seen, "top1_in_labels": correct / seen}
