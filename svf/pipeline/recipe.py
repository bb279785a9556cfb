"""A training recipe, typed: every value a recipe may set, and here (nowhere else) the default of those a recipe may
leave out. The config's ``recipes`` hold them (docs/recipes.md); :func:`resolve_recipe` merges one recipe for one
dataset, :class:`Recipe` is what a run reads. Light (no torch): the Snakefile builds specs with it."""
from __future__ import annotations

import copy
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Mapping

from ..errors import ConfigError, UnknownNameError
from .cells import DATASETS

RECIPE_DATASET_KEYS = DATASETS  # per-dataset sub-dicts inside a recipe override its top-level values


def resolve_recipe(config: Mapping[str, Any], recipe: str, dataset: str) -> dict:
    """The recipe's values for one dataset: top level, then the dataset's sub-dict, then the global overrides
    (``recipe_overrides``, used by the demo to shrink every schedule), then their per-dataset part."""
    recipes = config["recipes"]
    if recipe not in recipes:
        raise UnknownNameError(f"unknown recipe {recipe!r}; config defines {sorted(recipes)}")
    base = recipes[recipe]
    resolved = {k: copy.deepcopy(v) for k, v in base.items() if k not in RECIPE_DATASET_KEYS}
    resolved.update(copy.deepcopy(base.get(dataset, {})))
    overrides = config.get("recipe_overrides") or {}
    resolved.update({k: copy.deepcopy(v) for k, v in overrides.items() if k not in RECIPE_DATASET_KEYS})
    resolved.update(copy.deepcopy(overrides.get(dataset, {}) or {}))
    resolved["name"] = recipe
    return resolved


@dataclass(frozen=True)
class Recipe:
    """The training schedule and its selection of one recipe for one dataset (values checked by the config schema)."""

    name: str
    base_lr: float                      # the head's rate; the backbone's is base_lr * backbone_lr_mult
    schedule: str                       # auto | flat | poly (svf/engine/loop/schedule.py)
    poly_power: float
    poly_scale: float
    backbone_lr_mult: float
    momentum: float
    weight_decay: float
    batch_size: int
    select: str                         # best | last: which epoch's tensors are kept
    val_episodes: int                   # episodes of each in-training validation
    protocol: str                       # the final evaluation's protocol (svf/engine/tasks/protocols.py)
    epochs: int
    crop: int
    scale: tuple[float, float]
    val_size: int
    early_stop: int | None = None       # epochs without a new best before the run stops (None: never)
    val_source: str = "test"            # test | holdout: where the validation episodes come from
    val_every: int = 1                  # validate after every k-th epoch and the last
    val_cache_gb: float = 16.0          # host memory for a frozen backbone's cached validation inputs (0: off)
    max_episodes_per_epoch: int | None = None
    precision: str = "tf32"             # fp32 | tf32 | bf16 | fp16 (svf/engine/loop/precision.py)
    channels_last: bool = False
    loss_groups: int = 1                # the authors' GPUs: the loss is the mean of the groups' means
    micro_batch: int | None = None      # images per forward/backward (None: one loss group)
    rotate: tuple[float, float] = (-10.0, 10.0)
    mid_epoch_val: bool = False         # also validate halfway through every epoch but the first
    base_val_images: int | None = None  # BAM's stage 1: validate on this many val images (None: all)
    pfenet_bins: tuple | None = None    # PFENet cells: FEM bins instead of model.pfenet.bins (pixels or fractions)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.name in _CONVERT:
                object.__setattr__(self, f.name, _CONVERT[f.name](value))

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "Recipe":
        return cls(**checked_fields(cls, values, f"recipe {values.get('name')!r}"))

    @classmethod
    def of(cls, config: Mapping[str, Any], recipe: str, dataset: str) -> "Recipe":
        return cls.from_json(resolve_recipe(config, recipe, dataset))

    def to_json(self) -> dict:
        return plain(asdict(self))


_INTS = ("batch_size", "val_episodes", "epochs", "crop", "val_size", "early_stop", "val_every",
         "max_episodes_per_epoch", "loss_groups", "micro_batch", "base_val_images")
_FLOATS = ("base_lr", "poly_power", "poly_scale", "backbone_lr_mult", "momentum", "weight_decay", "val_cache_gb")
_CONVERT = {**{k: int for k in _INTS}, **{k: float for k in _FLOATS}, "channels_last": bool, "mid_epoch_val": bool,
            "scale": lambda v: tuple(float(x) for x in v), "rotate": lambda v: tuple(float(x) for x in v),
            "pfenet_bins": tuple}  # bins keep their type: integers are pixels, fractions are floats


def checked_fields(cls, values: Mapping[str, Any], what: str) -> dict:
    """``values`` as keyword arguments of the dataclass ``cls``; an unknown or missing key is a ConfigError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown keys {unknown}; known: {sorted(known)}")
    missing = [f.name for f in fields(cls)
               if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
    if missing:
        raise ConfigError(f"{what}: missing {missing}")
    return dict(values)


def plain(value: Any) -> Any:
    """JSON's form of a value: tuples as lists, recursively (what a spec file and a checkpoint hold)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


__all__ = ["RECIPE_DATASET_KEYS", "Recipe", "checked_fields", "plain", "resolve_recipe"]
