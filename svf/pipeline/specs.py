"""Specifications built from the config: a cell's, a BAM base learner's and the demo pretraining's (their types:
:mod:`svf.pipeline.spec_types`); the config as a command run by hand reads it; the config hash.

A spec is plain JSON so that Snakemake can pass it as a rule parameter (a change re-runs exactly the cells it
affects) and a run can be repeated by hand from its ``spec.json``. This module is imported by the Snakefile, so it
must stay light: no torch, no pandas.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..files import REPO_ROOT
from .cells import Cell
from .recipe import Recipe
from .spec_types import (BackboneSpec, BaseLearnerModelSpec, BaseLearnerSpec, CellSpec, DataSpec, EvalSpec, ModelSpec,
                         PretrainSpec)


def data_spec(config: Mapping[str, Any]) -> DataSpec:
    return DataSpec.of(config["data"])


def backbone_spec(config: Mapping[str, Any], backbone: str) -> BackboneSpec:
    """The config's backbone: ``model.depths`` and the stem apply to ResNet, ``model.vgg_stride`` to VGG (16 as the
    papers, 8 in the CPU demo). torchvision's ResNet-50 weights need its 7x7 stem; the authors' resnet50_v2 has the
    deep one."""
    model, settings = config["model"], {}
    if backbone == "resnet50":
        settings["depths"] = model.get("depths")
        if config["weights"].get("resnet50") == "torchvision":
            settings["stem"] = "standard"
    if backbone == "vgg16" and model.get("vgg_stride") is not None:
        settings["vgg_stride"] = int(model["vgg_stride"])
    return BackboneSpec(backbone, model["width"], **settings)


def model_spec(config: Mapping[str, Any], cell: Cell, recipe: Recipe) -> ModelSpec:
    """A cell's network: the config's ``model`` for its method (a recipe's ``pfenet_bins`` replace PFENet's bins;
    BAM's base classes are the fold's under the config's COCO split)."""
    model = config["model"]
    options = copy.deepcopy(model.get(cell.method) or {})
    if cell.method == "pfenet" and recipe.pfenet_bins:
        options["bins"] = list(recipe.pfenet_bins)  # e.g. pfenet-original: PFENet's own per-dataset bins
    base = data_spec(config).fold_classes(cell.dataset, cell.fold).base if cell.method == "bam" else None
    return ModelSpec(cell.method, backbone_spec(config, cell.backbone), int(cell.shot), model["dilation"][cell.method],
                     int(model["reduce_dim"]), options, base)


def evaluation_spec(config: Mapping[str, Any], recipe: Recipe) -> EvalSpec:
    """The config's ``evaluation``; its protocol defaults to the recipe's."""
    evaluation = {k: v for k, v in config["evaluation"].items() if v is not None}
    return EvalSpec(**{**evaluation, "protocol": evaluation.get("protocol") or recipe.protocol})


def build_cell_spec(config: Mapping[str, Any], cell: Cell) -> CellSpec:
    """A cell's typed specification under ``config``."""
    recipe = Recipe.of(config, cell.recipe, cell.dataset)
    return CellSpec(cell=cell, model=model_spec(config, cell, recipe), rank=config["model"]["rank"], recipe=recipe,
                    evaluation=evaluation_spec(config, recipe), data=data_spec(config), val_seed=int(config["seed"]),
                    deterministic=bool(config.get("deterministic", False)))


def cell_spec(config: Mapping[str, Any], cell: Cell) -> dict:
    """The JSON specification of a cell under ``config`` (the rules' parameter, what a bundle records)."""
    return build_cell_spec(config, cell).to_json()


def build_base_learner_spec(config: Mapping[str, Any], dataset: str, backbone: str, fold: int) -> BaseLearnerSpec:
    """BAM's stage-1 PSPNet base learner for (dataset, backbone, fold), recipe ``bam-base``."""
    data = data_spec(config)
    model = BaseLearnerModelSpec(backbone_spec(config, backbone), config["model"]["dilation"]["bam"],
                                 data.fold_classes(dataset, int(fold)).base,
                                 (config["model"].get("bam") or {}).get("base_cls_dim"))
    return BaseLearnerSpec(dataset, int(fold), model, Recipe.of(config, "bam-base", dataset), data,
                           int(config["seed"]), bool(config.get("deterministic", False)))


def base_learner_spec(config: Mapping[str, Any], dataset: str, backbone: str, fold: int) -> dict:
    return build_base_learner_spec(config, dataset, backbone, fold).to_json()


def pretrain_spec(config: Mapping[str, Any], backbone: str, world_seed: int | None = None) -> dict:
    """The JSON specification of the demo's stand-in pretraining of one backbone (``weights.source: pretrain``),
    seeded by its world's seed (per-seed worlds) or the config's seed (one shared world)."""
    seed = int(config["seed"] if world_seed is None else world_seed)
    return PretrainSpec(backbone_spec(config, backbone), **config["weights"]["pretrain"], seed=seed,
                        deterministic=bool(config.get("deterministic", False)), looks=synthetic_looks(config)).to_json()


def synthetic_looks(config: Mapping[str, Any]) -> str:
    """The synthetic world's look scheme (``data.synthetic.looks``; absent: ``shared``, the demo's, so configs that
    do not name it keep their config hash)."""
    return ((config.get("data") or {}).get("synthetic") or {}).get("looks") or "shared"


def merge_configs(configs: list[dict]) -> dict:
    """Config dicts merged in order, nested keys merged as Snakemake merges --configfile files."""
    def merge(a, b):
        for key, value in b.items():
            a[key] = merge(a.get(key, {}), value) if isinstance(value, dict) and isinstance(a.get(key), dict) \
                else copy.deepcopy(value)
        return a
    merged: dict = {}
    for config in configs:
        merge(merged, config or {})
    return merged


#: The workflow's config schema (Snakemake validates the config with it and fills in its defaults).
CONFIG_SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load_config(configfiles: list[str] | None = None, config_json: str | None = None) -> dict:
    """The config a command run by hand works under: ``configfiles`` merged as Snakemake merges ``--configfile``
    and validated by the workflow's schema with its defaults filled in, as Snakemake does (so specs and the config
    hash match the workflow's); or ``config_json``, the merged config a rule passes (already validated)."""
    if config_json is not None:
        return json.loads(config_json)
    import yaml
    from snakemake.utils import validate

    config = merge_configs([yaml.safe_load(Path(path).read_text(encoding="utf-8")) for path in configfiles or []])
    validate(config, str(CONFIG_SCHEMA))
    return config


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def config_hash(config: Mapping[str, Any]) -> str:
    """Hash of the settings that make cells comparable (model, recipes, evaluation, data, seed, weights).

    Cells of one table must share it; ``svf tables`` refuses to mix hashes unless told to.
    """
    keys = ("model", "recipes", "recipe_overrides", "evaluation", "data", "weights", "seed", "deterministic")
    relevant = {k: config.get(k) for k in keys}
    return hashlib.sha256(canonical_json(relevant).encode()).hexdigest()[:12]


def load_spec(value: str) -> dict:
    """A spec given as a JSON string or as a path to a JSON file."""
    text = value.strip()
    if not text.startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"--spec {value!r} is neither JSON text nor an existing file",
                              advice="Pass the spec a Snakemake job passes (see its log), or a file holding it.")
        text = path.read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--spec is not valid JSON: {err}") from None
    return spec
