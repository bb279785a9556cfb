"""The demo's stand-in for ImageNet pretraining: a tiny backbone learns to name the object of an object-centric
synthetic image (:class:`svf.synthetic.objects.ObjectImages`; single-label cross-entropy over every class look, as
ImageNet classification), so the few-shot methods start from features that already separate the synthetic classes,
novel ones included, as ImageNet features do for PASCAL's.

Schedule: SGD (momentum 0.9, weight decay 1e-4), one-cycle rate (10% warm-up, cosine decay), ``steps`` batches of
freshly drawn images; the last 10% of steps report top-1 accuracy. Output: the backbone's state dict in our key layout
(``layer0.0.weight`` ...), loadable like ImageNet weights.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from ... import console
from ... import files as atomic
from ...backbones import build_backbone
from ...errors import TrainingError
from ...pipeline.spec_types import PretrainSpec
from ...synthetic.objects import ObjectImages
from ..loop.device import setup_process
from ..loop.fit import seed_everything


def pretrain_backbone(spec: PretrainSpec, out: str, threads: int | None = None, device: str = "auto") -> dict:
    dev = setup_process(threads, device, spec.deterministic)
    seed = spec.seed
    seed_everything(seed)
    arch = spec.backbone
    backbone = build_backbone(arch.name, width=arch.width, depths=arch.depths, stem=arch.stem,
                              vgg_stride=arch.vgg_stride)
    steps, batch = int(spec.steps), int(spec.batch_size)
    data = ObjectImages(int(spec.classes), int(spec.size), steps * batch, seed=seed, looks=spec.looks)
    loader = DataLoader(data, batch_size=batch, shuffle=False, drop_last=True)
    head = nn.Linear(backbone.channels["layer4"], int(spec.classes))
    model = nn.ModuleDict({"backbone": backbone, "head": head}).to(dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(spec.lr), momentum=0.9, weight_decay=1e-4)
    # at least 3 warm-up steps: OneCycleLR divides by the warm-up length (a zero one for very short runs)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(spec.lr), total_steps=steps,
                                                    pct_start=min(0.5, max(0.1, 3 / steps)))
    model.train()
    started, report = time.time(), max(1, steps // 10)
    tail_hits = tail_seen = 0
    for step, item in enumerate(loader):
        image, label = item["image"].to(dev), item["label"].to(dev)
        logits = head(backbone(image)[-1].mean((2, 3)))
        loss = nn.functional.cross_entropy(logits, label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step >= steps - report:
            tail_hits += int((logits.argmax(1) == label).sum())
            tail_seen += len(label)
        if (step + 1) % report == 0:
            console.progress(f"{arch.name}: step {step + 1}/{steps} ({100 * (step + 1) // steps}%), "
                             f"loss {loss.item():.4f}, {time.time() - started:.0f} s")
    if not torch.isfinite(loss):
        raise TrainingError(f"pretraining {arch.name}: the loss became {loss.item()}; lower weights."
                            f"pretrain.lr ({spec.lr})")
    accuracy = tail_hits / max(tail_seen, 1)
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    atomic.torch_save(out, state)
    return {"loss": float(loss.detach()), "top1": accuracy, "tail_steps": report, "steps": steps,
            "wall_time_s": time.time() - started}
