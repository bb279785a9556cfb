"""Cell specifications: everything a training or evaluation process needs besides file paths.

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

from ..errors import ConfigError, UnknownNameError
from .cells import DATASETS, Cell

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


def model_kwargs(config: Mapping[str, Any], method: str, backbone: str, shot: int, dataset: str, fold: int) -> dict:
    """Keyword arguments of ``svf.models.build_model`` for a cell (dataset/fold give BAM its base classes)."""
    model = config["model"]
    kwargs = {
        "backbone": backbone,
        "shot": shot,
        "dataset": dataset,
        "fold": fold,
        "coco_split": config["data"].get("coco_split", "interleaved"),
        "width": model["width"],
        "depths": backbone_depths(config, backbone),
        "reduce_dim": model["reduce_dim"],
        "dilation": model["dilation"][method],
        "stem": backbone_stem(config, backbone),
        **backbone_extra(config, backbone),
    }
    kwargs.update(copy.deepcopy(model.get(method) or {}))
    return kwargs


def backbone_extra(config: Mapping[str, Any], backbone: str) -> dict:
    """VGG's output stride (``model.vgg_stride``: 16 as the papers, 8 in the CPU demo); nothing for ResNet."""
    return {"vgg_stride": int(config["model"].get("vgg_stride", 16))} if backbone == "vgg16" else {}


def backbone_depths(config: Mapping[str, Any], backbone: str):
    """``model.depths`` (blocks per ResNet stage) applies to ResNet only; VGG16 has a fixed depth."""
    return config["model"].get("depths") if backbone == "resnet50" else None


def backbone_stem(config: Mapping[str, Any], backbone: str) -> str:
    """torchvision ResNet-50 weights need torchvision's 7x7 stem; the authors' resnet50_v2 has the deep stem."""
    return "standard" if backbone == "resnet50" and config["weights"].get("resnet50") == "torchvision" else "deep"


def evaluation_settings(config: Mapping[str, Any], recipe: Mapping[str, Any]) -> dict:
    evaluation = dict(config["evaluation"])
    evaluation["protocol"] = evaluation.get("protocol") or recipe["protocol"]
    return evaluation


def cell_spec(config: Mapping[str, Any], cell: Cell) -> dict:
    """The full, JSON-serialisable specification of a cell under ``config``."""
    recipe = resolve_recipe(config, cell.recipe, cell.dataset)
    model = model_kwargs(config, cell.method, cell.backbone, cell.shot, cell.dataset, cell.fold)
    if cell.method == "pfenet" and recipe.get("pfenet_bins"):
        model["bins"] = list(recipe["pfenet_bins"])  # e.g. pfenet-original: PFENet's own per-dataset bins
    return {
        "cell": cell.as_dict(),
        "cell_id": cell.id,
        "model": model,
        "rank": config["model"]["rank"],
        "recipe": recipe,
        "evaluation": evaluation_settings(config, recipe),
        "seed": int(cell.seed),                 # training: initialisation, data order, augmentation
        "val_seed": int(config["seed"]),        # in-training validation episodes: the same for every seed
        "exif_orientation": config["data"].get("exif_orientation", "apply"),
        "deterministic": bool(config.get("deterministic", False)),
    }


def base_learner_spec(config: Mapping[str, Any], dataset: str, backbone: str, fold: int) -> dict:
    """Specification of BAM's stage-1 PSPNet base learner for (dataset, backbone, fold)."""
    bam = config["model"].get("bam") or {}
    return {
        "dataset": dataset,
        "backbone": backbone,
        "fold": int(fold),
        "model": {
            "backbone": backbone,
            "dataset": dataset,
            "fold": int(fold),
            "coco_split": config["data"].get("coco_split", "interleaved"),
            "width": config["model"]["width"],
            "depths": backbone_depths(config, backbone),
            "dilation": config["model"]["dilation"]["bam"],
            "stem": backbone_stem(config, backbone),
            **backbone_extra(config, backbone),
            "cls_dim": bam.get("base_cls_dim", 512),
        },
        "recipe": resolve_recipe(config, "bam-base", dataset),
        "exif_orientation": config["data"].get("exif_orientation", "apply"),
        "seed": int(config["seed"]),
        "deterministic": bool(config.get("deterministic", False)),
    }


def pretrain_spec(config: Mapping[str, Any], backbone: str, world_seed: int | None = None) -> dict:
    """Specification of the demo's stand-in pretraining of one backbone (``weights.source: pretrain``), seeded by
    its world's seed (per-seed worlds) or the config's seed (one shared world)."""
    model = config["model"]
    return {
        "model": {"backbone": backbone, "width": model["width"], "depths": backbone_depths(config, backbone),
                  "stem": backbone_stem(config, backbone), **backbone_extra(config, backbone)},
        **config["weights"]["pretrain"],
        "seed": int(config["seed"] if world_seed is None else world_seed),
        "deterministic": bool(config.get("deterministic", False)),
    }


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
CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


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
