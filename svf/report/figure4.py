"""Figure 4: the segmentation cues of the singular components whose value changed most in training.

For the last 3x3 conv of layer3 (``layer3.5.conv2`` in ResNet-50) of a trained SVF cell, ΔS = S_after - S_before
picks the component with the largest decrease and the one with the largest increase. Their cue on an image is
channel k of the conv's V-step output (the input projected on the k-th right singular vector), shown as a heat map
over a few query images of the fold's test list, with the ground-truth outline of the episode class.
(docs/sources.md#figure-4: the most plausible reading; the paper's exact recipe is unknown.)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..decompose import SVDConv2d
from ..engine.build import load_cell_model
from ..engine.device import setup_process
from ..engine.loaders import eval_loader
from ..pipeline.paths import SINGULAR_VALUES

_MEAN = np.array([0.485, 0.456, 0.406]) * 255
_STD = np.array([0.229, 0.224, 0.225]) * 255


def last_kxk_conv(model: nn.Module, stage: str = "layer3") -> str:
    """Qualified name of the last SVD conv with a kernel larger than 1x1 inside ``stage``."""
    names = [n for n, m in getattr(model, stage).named_modules()
             if isinstance(m, SVDConv2d) and max(m.conv_V.kernel_size) > 1]
    if not names:
        raise ValueError(f"{stage} has no decomposed kxk conv: is the cell an SVF cell?")
    return f"{stage}.{names[-1]}"


def changed_components(before: list[float], after: list[float]) -> tuple[int, int]:
    """(index of the largest singular-value decrease, index of the largest increase)."""
    delta = np.asarray(after) - np.asarray(before)
    return int(delta.argmin()), int(delta.argmax())


@torch.no_grad()
def component_maps(model: nn.Module, layer: str, images: torch.Tensor, components: tuple[int, ...]) -> torch.Tensor:
    """Responses (N, len(components), h, w) of the given channels of ``layer``'s V-step on ``images``."""
    conv = model.get_submodule(layer)
    captured = {}
    handle = conv.conv_V.register_forward_hook(lambda m, i, o: captured.setdefault("v", o))
    try:
        x = images
        for k in range(4):  # layer0..layer3 reach the conv
            x = getattr(model, f"layer{k}")(x)
    finally:
        handle.remove()
    return captured["v"][:, list(components)]


def figure4(spec: dict, dataset_root: str, splits_dir: str, weights: str | None, model_file: str, out: str,
            n_images: int = 4, base_learner: str | None = None, threads: int | None = None) -> dict:
    import matplotlib.pyplot as plt

    from .figures import save_figure  # sets the Agg backend

    device = setup_process(threads, "auto", bool(spec.get("deterministic", False)))
    model, _, _ = load_cell_model(spec, model_file, weights, base_learner)
    model.to(device).eval()
    layer = last_kxk_conv(model)
    sv = json.loads(Path(model_file).with_name(SINGULAR_VALUES).read_text())
    dec, inc = changed_components(sv["before"][layer], sv["after"][layer])
    loader = eval_loader(spec, dataset_root, splits_dir, n_episodes=n_images, seed=int(spec["seed"]),
                         batch_size=n_images)
    batch = next(iter(loader))
    maps = component_maps(model, layer, batch["query"].to(device), (dec, inc)).cpu()
    size = batch["query"].shape[-2:]
    maps = nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)

    n = batch["query"].shape[0]
    fig, axes = plt.subplots(3, n, figsize=(2.4 * n, 7.4), squeeze=False)
    before, after = sv["before"][layer], sv["after"][layer]
    titles = (f"(a) largest decrease: k={dec}\nS {before[dec]:.3f} -> {after[dec]:.3f}",
              f"(b) largest increase: k={inc}\nS {before[inc]:.3f} -> {after[inc]:.3f}")
    for j in range(n):
        image = (batch["query"][j].permute(1, 2, 0).numpy() * _STD + _MEAN).clip(0, 255).astype(np.uint8)
        label = batch["query_label"][j].numpy()
        axes[0, j].imshow(image)
        axes[0, j].contour(label == 1, levels=[0.5], colors="lime", linewidths=1)
        axes[0, j].set_title(f"query, class {int(batch['class_id'][j])}", fontsize=8)
        for row in (0, 1):
            response = maps[j, row].numpy()
            axes[row + 1, j].imshow(image)
            axes[row + 1, j].imshow(response, cmap="jet", alpha=0.5)
            axes[row + 1, j].contour(label == 1, levels=[0.5], colors="white", linewidths=0.8)
            if j == 0:
                axes[row + 1, j].set_ylabel(titles[row], fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Figure 4 — {layer}, cell {spec['cell_id']}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
    return {"layer": layer, "decrease": dec, "increase": inc}
