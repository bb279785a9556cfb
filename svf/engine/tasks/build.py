"""Build the network of a cell exactly as its training did: architecture, pretrained weights, BAM base learner,
fine-tune policy (SVD decomposition). Training, evaluation and Figure 4 all go through here, so the frozen parts
of a model are reconstructed identically from the same inputs and only the trained tensors need saving."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...backbones.base import STAGES
from ...backbones.weights import load_backbone_weights
from ...files import torch_load
from ...decompose import load_trainable_state_dict, trainable_state_dict
from ...models import build_model
from ...pipeline.spec_types import CellSpec
from ...policy import Policy, apply_policy, parse_policy


WEIGHTS_REMEDY = "delete it; `snakemake` re-makes it (rule imagenet_weights, or pretrain_weights in the demo)"
BASE_LEARNER_REMEDY = "delete it; `snakemake` re-makes it (rule train_base, or import_base_learner)"
MODEL_REMEDY = "delete it; `snakemake` re-trains the cell (rule train)"


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """ImageNet (or demo stand-in) weights into the backbone stages of ``model``."""
    state = torch_load(path, "backbone weights file", WEIGHTS_REMEDY)
    load_backbone_weights(model, state, source=str(path))


def build_cell_model(spec: CellSpec, weights: str | Path | None, base_learner: str | Path | None = None
                     ) -> tuple[nn.Module, Policy]:
    """The untrained model of a cell: architecture + pretrained weights (+ BAM base learner) + policy applied."""
    # Seeded construction: a head parameter that never trains (the baseline's down_query, as in the authors' code)
    # keeps its random initialisation, which must be the same in training, evaluation and figures.
    torch.manual_seed(spec.seed)
    model = build_model(spec.model.method, **spec.model.kwargs())
    if weights is not None:
        load_weights_file(model, weights)
    if spec.model.method == "bam":
        if base_learner is None:
            raise ValueError(f"cell {spec.cell_id}: BAM needs a trained base learner (--base-learner)")
        model.load_base_learner(torch_load(base_learner, "BAM base learner", BASE_LEARNER_REMEDY))
    policy = parse_policy(spec.cell.policy)
    # The SVD runs on the CPU in float64 so that every process (train, evaluate, Figure 4) gets identical factors.
    apply_policy(model, policy, rank=spec.rank)
    return model, policy


def random_base_learner(spec: CellSpec, directory: str | Path) -> str:
    """A randomly initialised BAM base learner for a cell's spec, saved under ``directory`` (timing and tests: the
    shapes of a trained one, no training)."""
    from ...models import build_base_learner

    with torch.random.fork_rng(devices=[]):  # seeded: the same backbone weights for every kind of a backbone
        torch.manual_seed(spec.seed)
        base = build_base_learner(**spec.model.base_learner().kwargs())
    cell = spec.cell
    path = Path(directory) / f"base_{cell.dataset}_{cell.backbone}_fold{cell.fold}.pt"
    torch.save(base.state_dict(), path)
    return str(path)


FROM_FILES = STAGES + tuple(f"{s}p" for s in STAGES) + ("learner_base",)  # rebuilt from weight files


def trained_state(model: nn.Module, policy: Policy) -> dict[str, torch.Tensor]:
    """What model.pt stores (on CPU): the tensors training changed — trainable ones, and BN statistics when BN runs
    in train mode (-bntrain) — plus the whole head, frozen parts included, so nothing depends on re-drawing a
    random initialisation; the backbone and BAM's base learner are rebuilt from their weight files."""
    state = trainable_state_dict(model, extra=policy.extra_state)
    for key, value in model.state_dict().items():
        if key.split(".", 1)[0] not in FROM_FILES:
            state.setdefault(key, value.detach().clone())
    return {k: v.cpu() for k, v in state.items()}


def load_cell_model(spec: CellSpec, model_file: str | Path, weights: str | Path | None,
                    base_learner: str | Path | None = None) -> tuple[nn.Module, Policy, dict]:
    """Rebuild a trained cell: :func:`build_cell_model`, then the trained tensors of ``model.pt``."""
    model, policy = build_cell_model(spec, weights, base_learner)
    saved = torch_load(model_file, "trained cell", MODEL_REMEDY)
    if saved.get("cell_id") != spec.cell_id:
        raise ValueError(f"{model_file} belongs to cell {saved.get('cell_id')!r}, not {spec.cell_id!r}")
    load_trainable_state_dict(model, saved["state"])
    return model, policy, saved
