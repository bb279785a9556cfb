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

from ..backbones.base import STAGES
from ..data.transforms import MEAN, STD
from ..decompose import SVDConv2d
from ..engine.tasks.build import load_cell_model
from ..engine.loop.device import setup_process
from ..engine.tasks.loaders import eval_loader
from ..pipeline.paths import SINGULAR_VALUES
from ..pipeline.spec_types import CellSpec

_MEAN, _STD = np.array(MEAN), np.array(STD)  # ImageNet statistics in pixel units, to undo the normalisation


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
        for stage in STAGES[:STAGES.index(layer.split(".")[0]) + 1]:  # the stages up to the conv's
            x = getattr(model, stage)(x)
    finally:
        handle.remove()
    return captured["v"][:, list(components)]


#: The synthetic textures (svf/synthetic/looks.py) in words, for the titles of Figure 4.
TEXTURE_WORDS = {"solid": "plain", "hstripes": "horizontally striped", "vstripes": "vertically striped",
                 "checker": "chequered", "diagonal": "diagonally striped", "dots": "dotted"}


def class_names(dataset_root: str) -> dict[int, str]:
    """``{class id: name}`` from the prepared dataset's dataset.json; on synthetic data the name is followed by the
    look that stands in for the class (shape and texture)."""
    from ..data.datasets import open_dataset

    dataset = open_dataset(dataset_root)
    names = {k + 1: name for k, name in enumerate(dataset.info["class_names"])}
    if dataset.info.get("source") == "synthetic":
        from ..synthetic.looks import class_look

        names = {c: f"{name} ({TEXTURE_WORDS.get(class_look(c)[1], class_look(c)[1])} {class_look(c)[0]})"
                 for c, name in names.items()}
    return names


def figure4(spec: CellSpec, dataset_root: str, splits_dir: str, weights: str | None, model_file: str, out: str,
            n_images: int = 4, base_learner: str | None = None, threads: int | None = None,
            demo: bool = False) -> dict:
    import matplotlib.pyplot as plt

    from .figures import OKABE_ITO, PAGE_WIDTH_IN, figure_title, save_figure  # sets the Agg backend

    device = setup_process(threads, "auto", spec.deterministic)
    model, _, _ = load_cell_model(spec, model_file, weights, base_learner)
    model.to(device).eval()
    layer = last_kxk_conv(model)
    sv = json.loads(Path(model_file).with_name(SINGULAR_VALUES).read_text())
    dec, inc = changed_components(sv["before"][layer], sv["after"][layer])
    loader = eval_loader(spec, dataset_root, splits_dir, n_episodes=n_images, seed=spec.seed,
                         batch_size=n_images)
    batch = next(iter(loader))
    maps = component_maps(model, layer, batch["query"].to(device), (dec, inc)).cpu()
    size = batch["query"].shape[-2:]
    maps = nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False).numpy()
    names = class_names(dataset_root)

    n = batch["query"].shape[0]
    fig, axes = plt.subplots(3, n + 1, figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN * 3 / (n + 0.3) + 0.9), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n + [0.07]})
    before, after = sv["before"][layer], sv["after"][layer]
    rows = (f"(a) component {dec},\nlargest decrease\nS {before[dec]:.3f} → {after[dec]:.3f}",
            f"(b) component {inc},\nlargest increase\nS {before[inc]:.3f} → {after[inc]:.3f}")
    axes[0, n].set_axis_off()
    for row in (0, 1):  # one colour scale per component, shared by its images, so they can be compared
        lo, hi = float(maps[:, row].min()), float(maps[:, row].max())
        for j in range(n):
            image = (batch["query"][j].permute(1, 2, 0).numpy() * _STD + _MEAN).clip(0, 255).astype(np.uint8)
            label = batch["query_label"][j].numpy()
            if row == 0:
                axes[0, j].imshow(image)
                axes[0, j].contour(label == 1, levels=[0.5], colors=OKABE_ITO[1], linewidths=1.2)
                class_id = int(batch["class_id"][j])
                name = names.get(class_id, "").replace(" (", "\n(")  # the look on its own line
                axes[0, j].set_title(f"class {class_id}: {name}", fontsize=6.5)
            ax = axes[row + 1, j]
            ax.imshow(image, alpha=0.45)
            shown = ax.imshow(maps[j, row], cmap="viridis", alpha=0.7, vmin=lo, vmax=hi)
            ax.contour(label == 1, levels=[0.5], colors="white", linewidths=0.9)
            if j == 0:
                ax.set_ylabel(rows[row], fontsize=7)
        bar = fig.colorbar(shown, cax=axes[row + 1, n])
        bar.set_label("response (V-step output)", fontsize=6)
        bar.ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("query image,\noutline of the\nepisode's class", fontsize=7)
    for ax in axes[:, :n].flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure_title(fig, f"Figure 4: response maps of the singular components of {layer} whose value changed most",
                 demo, f"cell {spec.cell_id}")
    fig.tight_layout()
    save_figure(fig, out)
    return {"layer": layer, "decrease": dec, "increase": inc}
