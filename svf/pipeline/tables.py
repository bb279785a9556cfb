"""config/tables.yaml: load, validate, and turn tables into cells.

The Snakefile imports this module at parse time, so it stays light: yaml and jsonschema only (no pandas/torch),
both imported where used (``tables_from_document`` needs neither: the GPU check runs without them).

A table row carries the cell parameters (backbone, method, setting, policy, recipe; the table's ``defaults`` fill in
what a row leaves out); the table adds dataset, shots and folds, and the configuration the training seeds (one cell
per seed; the paper's 321 alone by default). The cell of (row, shot, fold) is a plain dict with
the keys of ``CELL_KEYS``; rows of different tables with the same parameters give the same cell, which is how a
cell shared by several tables trains once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ConfigError, UnknownNameError
from ..files import REPO_ROOT
from .cells import DEFAULT_SEED, cell_id
from .validation import did_you_mean, schema_errors

#: The parameters a row must have (after the table's defaults are merged in).
ROW_CELL_KEYS = ("backbone", "method", "setting", "policy", "recipe")
#: The schema shipped with the repository (``workflow/schemas/tables.schema.yaml``).
DEFAULT_SCHEMA = REPO_ROOT / "workflow" / "schemas" / "tables.schema.yaml"


class TablesConfigError(ConfigError):
    """tables.yaml is malformed; the message names the file, the key path and the value at fault."""


def _check_policy(spec: str, where: str) -> None:
    """A valid, canonical policy name (the name is part of the cell's id and path)."""
    from ..policy_names import canonical_name

    try:
        canonical = canonical_name(spec)
    except ValueError as exc:
        raise TablesConfigError(f"{where}: {exc}") from None
    if canonical != spec:
        raise TablesConfigError(f"{where}: write the policy {spec!r} as {canonical!r} (its canonical name, which "
                                f"names the cell's directory)")


def _normalise_table(name: str, table: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Merge defaults into rows and check what the schema cannot express."""
    defaults = dict(table.get("defaults", {}))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    extra_columns = list(table.get("extra_columns", []))
    for i, raw in enumerate(table["rows"]):
        row = {**defaults, **raw}
        where = f"{source}: tables/{name}/rows/{i} (id {raw.get('id')!r})"
        missing = [k for k in ROW_CELL_KEYS if k not in row]
        if missing:
            raise TablesConfigError(f"{where}: missing cell parameter(s) {missing} (set them on the row or in "
                                    f"the table's defaults)")
        _check_policy(row["policy"], f"{where}/policy")
        if row["id"] in seen:
            raise TablesConfigError(f"{where}: duplicate row id {row['id']!r} in table {name}")
        seen.add(row["id"])
        unknown = sorted(set(row.get("extra", {})) - set(extra_columns))
        if unknown:
            raise TablesConfigError(f"{where}: extra key(s) {unknown} are not in the table's extra_columns "
                                    f"{extra_columns}")
        row.setdefault("extra", {})
        rows.append(row)
    ids = {r["id"] for r in rows}
    for i, row in enumerate(rows):
        target = row.get("delta_to")
        if target is not None and target not in ids:
            raise TablesConfigError(f"{source}: tables/{name}/rows/{i}/delta_to: unknown row id {target!r} "
                                    f"(rows of {name}: {sorted(ids)})")
    out = {k: v for k, v in table.items() if k not in ("rows", "defaults")}
    out.setdefault("group_header", "Group")
    out.setdefault("label_header", "Method")
    out.setdefault("extra_columns", [])
    out["rows"] = rows
    out["name"] = name
    return out


def load_tables(path: str | Path, schema: str | Path | Mapping[str, Any] | None = DEFAULT_SCHEMA
                ) -> dict[str, Any]:
    """Read tables.yaml and return it as ``{"tables": {name: table}}`` (file order), rows with defaults merged in
    and the optional keys filled (group_header, label_header, extra_columns, row extra); each table gets its
    ``name``.

    ``schema`` is a path to the JSON schema (YAML), the schema itself, or None to skip the schema check (the
    semantic checks always run). Raises TablesConfigError naming the file, key path and value at fault.
    """
    import yaml

    from ..files import read_document

    path = Path(path)
    doc = read_document(path, yaml.safe_load, yaml.YAMLError, TablesConfigError, "tables file not found", "YAML")
    if schema is not None and not isinstance(schema, Mapping):
        schema_path = Path(schema)
        if not schema_path.is_file():
            raise TablesConfigError(f"{schema_path}: tables schema not found")
        schema = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    return tables_from_document(doc, str(path), schema)


def tables_from_document(doc: Any, source: str = "tables.yaml", schema: Mapping[str, Any] | None = None
                         ) -> dict[str, Any]:
    """What :func:`load_tables` returns, from the parsed document (``schema``: checked when given)."""
    if schema is not None:
        errors = schema_errors(doc, schema)
        if errors:
            raise TablesConfigError(f"{source}: does not match the tables schema:\n  " + "\n  ".join(errors))
    if not isinstance(doc, Mapping) or not isinstance(doc.get("tables"), Mapping):
        raise TablesConfigError(f"{source}: expected a mapping with a 'tables' key")
    return {"tables": {name: _normalise_table(name, table, source) for name, table in doc["tables"].items()}}


def tables_of(tables: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """``{name: table}`` from what load_tables returns (or from that mapping itself: table names never equal
    'tables', the schema requires table<N>)."""
    inner = tables.get("tables")
    return inner if isinstance(inner, Mapping) else tables


def _select(tables: Mapping[str, Mapping[str, Any]], names: Iterable[str] | None) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"names must be a list of table names, not the string {names!r}")
    if names is None:
        return list(tables)
    names = list(names)
    unknown = [n for n in names if n not in tables]
    if unknown:
        raise UnknownNameError(f"unknown table(s) {unknown}; tables.yaml has {list(tables)}"
                       f"{did_you_mean(unknown[0], tables)}")
    return names


def table_entries(table: Mapping[str, Any], shots: Sequence[int] | None = None,
                  folds: Sequence[int] | None = None, row_ids: Iterable[str] | None = None,
                  seeds: Sequence[int] = (DEFAULT_SEED,)
                  ) -> list[tuple[dict[str, Any], int, int, dict[str, Any]]]:
    """``(row, shot, fold, cell)`` for every cell of one table, in row, shot, fold, seed order.

    ``shots``/``folds`` restrict the table's own lists (e.g. a demo running fold 0 only); ``row_ids`` its rows
    (an unknown id is an error); ``seeds`` are the training seeds (one cell per seed).
    """
    rows = table["rows"]
    if row_ids is not None:
        row_ids = list(row_ids)
        known = [r["id"] for r in rows]
        unknown = [r for r in row_ids if r not in known]
        if unknown:
            raise UnknownNameError(f"table {table.get('name', '?')} has no row(s) {unknown}; its rows are {known}"
                                   f"{did_you_mean(unknown[0], known)}")
        rows = [r for r in rows if r["id"] in row_ids]
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    entries = []
    for row in rows:
        for shot in table["shots"]:
            if shots is not None and shot not in shots:
                continue
            for fold in table["folds"]:
                if folds is not None and fold not in folds:
                    continue
                for seed in seeds:
                    cell = {"dataset": table["dataset"], **{k: row[k] for k in ROW_CELL_KEYS},
                            "shot": int(shot), "fold": int(fold), "seed": seed}
                    entries.append((row, int(shot), int(fold), cell))
    return entries


def cells_of(tables: Mapping[str, Any], names: Iterable[str] | None = None, *,
             shots: Sequence[int] | None = None, folds: Sequence[int] | None = None,
             row_ids: Iterable[str] | None = None, seeds: Sequence[int] = (DEFAULT_SEED,)) -> list[dict[str, Any]]:
    """The distinct cells of the named tables (all when None), in first-appearance order.

    ``tables`` is what load_tables returns. ``shots``/``folds``/``row_ids`` restrict every named table (a row id
    must exist in each of them); every cell is repeated for each of ``seeds``.
    """
    tables = tables_of(tables)
    cells: dict[str, dict[str, Any]] = {}
    for name in _select(tables, names):
        for _, _, _, cell in table_entries(tables[name], shots=shots, folds=folds, row_ids=row_ids, seeds=seeds):
            cells.setdefault(cell_id(cell), cell)
    return list(cells.values())


def training_seeds(config: Mapping[str, Any]) -> list[int]:
    """The config's training seeds: ``tables.seeds``, else the one ``seed`` (the paper's 321)."""
    return list(config["tables"].get("seeds") or [config.get("seed", DEFAULT_SEED)])


def config_cells(config: Mapping[str, Any], tables: Mapping[str, Any], names: Iterable[str]) -> list[dict[str, Any]]:
    """The cells the workflow runs for the named tables under ``config``: every training seed, restricted to the
    config's ``tables.folds`` / ``tables.shots`` (the Snakefile's cells, also those a results bundle holds)."""
    known = list(tables_of(tables))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; {config['tables']['file']} defines {known}")
    return cells_of(tables, names, seeds=training_seeds(config), folds=config["tables"].get("folds"),
                    shots=config["tables"].get("shots"))


def _rows_cells(config: Mapping[str, Any], tables: Mapping[str, Any], names: Iterable[str], row_ids: set[str],
                seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The cells of the named tables' rows ``row_ids`` (in every table that has them) for ``seeds``."""
    cells: dict[str, dict[str, Any]] = {}
    for name in names if seeds else ():
        ids = [r["id"] for r in tables_of(tables)[name]["rows"] if r["id"] in row_ids]
        for cell in cells_of(tables, [name], row_ids=ids, seeds=seeds, folds=config["tables"].get("folds"),
                             shots=config["tables"].get("shots")) if ids else ():
            cells.setdefault(cell_id(cell), cell)
    return list(cells.values())


def primary_rows(config: Mapping[str, Any]) -> set[str]:
    """The rows of the study's primary claims ("ROW vs REFERENCE", docs/study.md)."""
    return {row for claim in config["study"]["primary"] for row in claim.split(" vs ")}


def primary_seeds_by_row(config: Mapping[str, Any]) -> dict[str, list[int]]:
    """``study.primary_seeds`` as row -> its extra training seeds: a list gives every primary claim's row the same
    seeds; a mapping names each row's own (each claim's power needs its own number of pairs, docs/study.md)."""
    seeds = (config.get("study") or {}).get("primary_seeds") or []
    if isinstance(seeds, Mapping):
        rows = primary_rows(config)
        stray = sorted(set(seeds) - rows)
        if stray:
            raise ValueError(f"study.primary_seeds names {stray}, which no primary claim compares (study.primary "
                             f"rows: {sorted(rows)})")
        return {row: list(s) for row, s in seeds.items() if s}
    return {row: list(seeds) for row in sorted(primary_rows(config))} if seeds else {}


def primary_seed_cells(config: Mapping[str, Any], tables: Mapping[str, Any],
                       names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The runs the study adds to the training seeds' (none without a ``study`` section): each primary claim's row
    for its ``study.primary_seeds``, in the named tables among the study's (default: all of the study's)."""
    study = config.get("study") or {}
    names = [n for n in (study.get("tables") or []) if names is None or n in names]
    cells: dict[str, dict[str, Any]] = {}
    for row, seeds in primary_seeds_by_row(config).items() if names else ():
        for cell in _rows_cells(config, tables, names, {row}, seeds):
            cells.setdefault(cell_id(cell), cell)
    return list(cells.values())


def study_cells(config: Mapping[str, Any], tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The study's runs: every row of its tables for the training seeds, and the primary claims' rows also for
    ``study.primary_seeds``."""
    cells = {cell_id(c): c for c in config_cells(config, tables, config["study"]["tables"])}
    for cell in primary_seed_cells(config, tables):
        cells.setdefault(cell_id(cell), cell)
    return list(cells.values())


def probe_cells(config: Mapping[str, Any], tables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cells the novel-class probe measures: ``study.probe_rows`` for ``study.probe_seeds``, which must not be
    training seeds of the study's rows (the mechanism is measured on runs the verdicts do not use)."""
    study = config["study"]
    seeds = list(study.get("probe_seeds") or [])
    extra = {seed for row_seeds in primary_seeds_by_row(config).values() for seed in row_seeds}
    shared = set(seeds) & (set(training_seeds(config)) | extra)
    if shared:
        raise ValueError(f"study.probe_seeds {sorted(shared)} are also training seeds of the study's rows; the "
                         f"probe must use seeds (and worlds) of its own")
    return _rows_cells(config, tables, study["tables"], set(study.get("probe_rows") or []), seeds)


def base_learners_of(cells: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, int]]:
    """The (dataset, backbone, fold) PSPNet base learners the BAM cells need, in first-appearance order.

    One base learner serves both settings (dagger and original) and every shot of its fold.
    """
    seen: dict[tuple[str, str, int], None] = {}
    for cell in cells:
        if cell["method"] == "bam":
            seen.setdefault((cell["dataset"], cell["backbone"], int(cell["fold"])), None)
    return list(seen)
