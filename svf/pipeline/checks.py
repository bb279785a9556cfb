"""Checks the Snakefile runs before it builds the DAG, each ending in one readable ConfigError or UsageError:
the merged config against its schema, a synthetic world's keys against the data and weights sources, the table
names of ``tables.build`` against the tables file, the recipes the tables use against the config, the
``$VARIABLES`` a profile's resources read, and a target that names nothing."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..errors import ConfigError, UsageError
from .cells import cell_id
from .validation import did_you_mean, schema_errors


def check_config(config: Mapping[str, Any], schema: str | Path, files: Sequence[str] = ()) -> None:
    """The merged config against ``schema``; the error names the files, every key at fault and the valid keys."""
    errors = schema_errors(dict(config), yaml.safe_load(Path(schema).read_text(encoding="utf-8")))
    if errors:
        raise ConfigError(f"{_source(files)}: " + "\n  ".join(["", *errors]).lstrip(),
                          advice="Fix these keys in the file that sets them (config/config.yaml documents every "
                                 "key; workflow/schemas/config.schema.yaml has the allowed values).")


def _source(files: Sequence[str]) -> str:
    return f"the config read from {', '.join(str(f) for f in files)}" if files else "the config"


def check_table_names(config: Mapping[str, Any], tables: Mapping[str, Any], tables_file: str,
                      files: Sequence[str] = ()) -> None:
    """Every table that ``tables.build`` and ``study.tables`` name exists in the tables file."""
    known = list(tables)
    for key, names in (("tables.build", config["tables"]["build"]),
                       ("study.tables", (config.get("study") or {}).get("tables", ()))):
        for name in names:
            if name not in known:
                raise ConfigError(f"{_source(files)}: {key}: {name!r} is not a table of {tables_file}"
                                  f"{did_you_mean(name, known)} (it defines {', '.join(known)})",
                                  advice=f"Add the table to {tables_file} or remove it from {key}.")


def check_synthetic_world(config: Mapping[str, Any], files: Sequence[str] = ()) -> None:
    """A synthetic world's settings (``data.synthetic.worlds: per_seed``, ``looks: fold_private``) need the synthetic
    data and the stand-in pretraining they redraw; with downloads and ImageNet weights they would be ignored."""
    synthetic = (config.get("data") or {}).get("synthetic") or {}
    asked = [f"data.synthetic.{key}: {synthetic[key]}" for key, default in (("worlds", "shared"), ("looks", "shared"))
             if synthetic.get(key, default) != default]
    sources = ((config.get("data") or {}).get("source"), (config.get("weights") or {}).get("source"))
    if asked and sources != ("synthetic", "pretrain"):
        raise ConfigError(f"{_source(files)}: {' and '.join(asked)} redraws the synthetic data and the stand-in "
                          f"pretraining; it needs data.source: synthetic and weights.source: pretrain (has "
                          f"{sources[0]} and {sources[1]})",
                          advice="Add config/demo.yaml before the study's files (as `make study` does), or leave "
                                 "the synthetic world's keys out on real data.")


def check_recipes(cells: Iterable[Mapping[str, Any]], recipes: Mapping[str, Any], tables_file: str) -> None:
    """Every recipe a table row uses is defined under the config's ``recipes``."""
    for cell in cells:
        if cell["recipe"] not in recipes:
            raise ConfigError(f"{tables_file}: cell {cell_id(cell)} uses recipe {cell['recipe']!r}"
                              f"{did_you_mean(cell['recipe'], recipes)}; the config defines "
                              f"{', '.join(sorted(recipes))}",
                              advice="Define the recipe under `recipes:` in your config, or use one of these.")


_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def unset_variables(values: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> dict[str, list[str]]:
    """``{variable: [where ...]}`` for every ``$VAR`` in ``values`` (``{where: raw value}``) that is not set."""
    missing: dict[str, list[str]] = {}
    for where, value in values.items():
        for name in _VARIABLE.findall(value) if isinstance(value, str) else ():
            if name not in environ:
                missing.setdefault(name, []).append(where)
    return missing


def check_profile_variables(values: Mapping[str, Any], profile_hint: str = "") -> None:
    missing = unset_variables(values)
    if missing:
        names = ", ".join(sorted(missing))
        uses = "; ".join(f"${name} in {', '.join(where)}" for name, where in sorted(missing.items()))
        raise ConfigError(f"the profile's resources read environment variable(s) that are not set: {names} ({uses})",
                          advice=f"Export them before running Snakemake, e.g. `export {sorted(missing)[0]}=...` "
                                 f"(an empty value leaves the choice to SLURM){profile_hint}.")


def unknown_target(name: str, targets: Sequence[str]) -> UsageError:
    return UsageError(f"{name!r} is neither a target rule nor a file the workflow makes{did_you_mean(name, targets)}",
                      advice=f"Targets: {', '.join(targets)} (`snakemake --list-target-rules`); a file target is "
                             f"its path, e.g. results/tables/table4.md.")


__all__ = ["check_config", "check_profile_variables", "check_recipes", "check_table_names", "unknown_target",
           "unset_variables"]
