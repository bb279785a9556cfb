"""A table cell: one training run (with its seed) and its evaluation, named by a readable id.

The id is the cell's directory under ``<results>/cells`` and also the Snakemake wildcard pattern, so one format
(``CELL_ID_FORMAT``) serves the workflow, the engine and the reports.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..data.datasets import DATASETS, SETTINGS

#: The parameters of a cell, in the order of its id.
CELL_KEYS = ("dataset", "backbone", "method", "setting", "policy", "recipe", "shot", "fold", "seed")
#: Integer parameters (the rest are strings).
INT_CELL_KEYS = ("shot", "fold", "seed")
#: The paper's training seed (manual_seed of the authors' configs): the one seed of a cell unless tables.seeds says.
DEFAULT_SEED = 321
#: The id pattern: the cell's directory under results/cells (also Snakemake's wildcard pattern).
CELL_ID_FORMAT = "{dataset}/{backbone}/{method}/{setting}/{policy}/{recipe}/{shot}shot/fold{fold}/seed{seed}"
#: The few-shot segmenters a cell can train (svf.models.build_model's methods).
METHODS = ("baseline", "pfenet", "bam")
#: The backbones a cell can use.
BACKBONES = ("resnet50", "vgg16")
#: A cell whose every field is its own Snakemake wildcard: ``cell_id(WILDCARDS) == CELL_ID_FORMAT``.
WILDCARDS = {key: "{" + key + "}" for key in CELL_KEYS}

__all__ = ["BACKBONES", "CELL_ID_FORMAT", "CELL_KEYS", "Cell", "DATASETS", "DEFAULT_SEED", "INT_CELL_KEYS", "METHODS",
           "SETTINGS", "WILDCARDS", "cell_id", "parse_cell_id"]


def cell_id(cell: Mapping[str, Any]) -> str:
    """The cell's directory under results/cells: dataset/backbone/method/setting/policy/recipe/Kshot/foldF/seedS."""
    try:
        return CELL_ID_FORMAT.format(**cell)
    except KeyError as exc:
        raise KeyError(f"cell {dict(cell)} lacks parameter {exc.args[0]!r}; a cell needs {list(CELL_KEYS)}") from None


def parse_cell_id(cid: str) -> dict[str, Any]:
    """Inverse of cell_id."""
    parts = cid.strip("/").split("/")
    suffixes = (("shot", "", "shot"), ("fold", "fold", ""), ("seed", "seed", ""))
    if len(parts) != len(CELL_KEYS) or not all(
            p.startswith(pre) and p.endswith(post) and p[len(pre):len(p) - len(post)].isdigit()
            for p, (_, pre, post) in zip(parts[6:], suffixes)):
        raise ValueError(f"not a cell id: {cid!r} (expected {CELL_ID_FORMAT})")
    cell: dict[str, Any] = dict(zip(CELL_KEYS[:6], parts[:6]))
    for p, (key, pre, post) in zip(parts[6:], suffixes):
        cell[key] = int(p[len(pre):len(p) - len(post)])
    return cell


@dataclass(frozen=True)
class Cell:
    """One table cell: a training run (with its seed) and its evaluation."""

    dataset: str
    backbone: str
    method: str
    setting: str
    policy: str
    recipe: str
    shot: int
    fold: int
    seed: int = DEFAULT_SEED

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Cell":
        missing = [f for f in CELL_KEYS if f not in values and f != "seed"]
        if missing:
            raise KeyError(f"cell is missing {missing}: {dict(values)}")
        return cls(**{f: (int(values[f]) if f in INT_CELL_KEYS else str(values[f])) for f in CELL_KEYS
                      if f in values})

    @property
    def id(self) -> str:
        return cell_id(self.as_dict())

    def as_dict(self) -> dict:
        return asdict(self)
