"""A results bundle's layout and manifest, the checks of its member names, and the import plan of a config.

An archive (``.tar.gz`` or ``.tar``) holds, in this order:

    manifest.json                                   format, versions, each cell's spec, a sha256 per file, totals
    cells/<cell id>/model.pt                        the trained tensors (what rule train writes)
    cells/<cell id>/train_log.csv, singular_values.json, train_summary.json, metrics.json
    base_learners/<dataset>/<backbone>/fold<k>/model.pt, train_log.csv     BAM's stage-1 PSPNets (if trained)

Nothing else: a member the manifest does not list, of another kind, or whose name leaves the target folder is
refused. The manifest comes first so that the Snakefile can plan an import (which cells, which refused) by reading
a few kilobytes, without the torch import or the whole archive. This module stays light for that reason.
"""
from __future__ import annotations

import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from ..pipeline import paths
from ..pipeline.cells import CELL_KEYS, Cell, cell_id
from ..pipeline.specs import base_learner_spec, cell_spec
from ..pipeline.tables import base_learners_of, config_cells, tables_of

FORMAT = "svf-results-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CELLS_DIR = "cells"
BASE_LEARNERS_DIR = "base_learners"
#: What a bundled cell holds: rule train's outputs and the cell's metrics.json (placed as RECORDED_METRICS).
CELL_FILES = (*paths.TRAIN_OUTPUTS, paths.METRICS)
BASE_LEARNER_FILES = (paths.MODEL, paths.TRAIN_LOG)
#: How each file is read back: tensors (torch, weights_only), JSON or CSV; no other kind enters an archive.
KINDS = {".pt": "tensors", ".json": "json", ".csv": "csv"}
MAX_MANIFEST_BYTES = 64 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Errors of a truncated or corrupt archive while tarfile/gzip read it.
READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


class BundleError(ValueError):
    """A bundle is refused or cannot be made; the message names the archive and the member or cell at fault."""


class SpecMismatchError(BundleError):
    """Bundled cells whose spec differs from the one this config gives them; the message names the keys."""


def cell_member(cid: str, name: str) -> str:
    return f"{CELLS_DIR}/{cid}/{name}"


def base_learner_key(dataset: str, backbone: str, fold: int | str) -> str:
    return f"{dataset}/{backbone}/fold{fold}"


def base_learner_member(key: str, name: str) -> str:
    return f"{BASE_LEARNERS_DIR}/{key}/{name}"


def check_member_name(name: str, archive: str | Path) -> str:
    """``name`` if it is a plain relative path inside the target folder; refuses absolute paths, ``..``, empty or
    ``.`` parts, backslashes and control characters (a name that could land outside the folder it is extracted to)."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if (not isinstance(name, str) or not name or name.startswith("/") or "\\" in name
            or any(ord(ch) < 32 for ch in name) or any(p in ("", ".", "..") for p in name.split("/"))
            or "/".join(parts) != name):
        raise BundleError(f"{archive}: member {name!r} escapes the target folder or is not a plain relative path; "
                          f"refused")
    return name


def expected_files(manifest: Mapping[str, Any]) -> list[str]:
    """Every member the manifest's cells and base learners imply (the manifest's ``files`` must list exactly these)."""
    names = [cell_member(cid, name) for cid in manifest["cells"] for name in CELL_FILES]
    names += [base_learner_member(key, name) for key in manifest["base_learners"] for name in BASE_LEARNER_FILES]
    return names


def _check_manifest(manifest: Any, archive: str | Path) -> dict:
    where = f"{archive}: {MANIFEST}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: not an svf results bundle (format {FORMAT!r} expected)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{where}: format version {manifest.get('format_version')!r}; this code reads "
                          f"{FORMAT_VERSION}")
    for key in ("cells", "base_learners", "files", "totals"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{where}: {key!r} missing or not a mapping")
    for cid, entry in manifest["cells"].items():
        cell = entry.get("cell") if isinstance(entry, dict) else None
        if not isinstance(cell, dict) or any(k not in cell for k in CELL_KEYS) or cell_id(cell) != cid:
            raise BundleError(f"{where}: cell entry {cid!r} lacks its cell parameters or they name another cell")
        if not isinstance(entry.get("spec"), dict) or entry["spec"].get("cell_id") != cid:
            raise BundleError(f"{where}: cell {cid!r} has no spec of its own")
    for key, entry in manifest["base_learners"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), dict) or base_learner_key(
                entry.get("dataset"), entry.get("backbone"), entry.get("fold")) != key:
            raise BundleError(f"{where}: base learner entry {key!r} is malformed")
    for name, entry in manifest["files"].items():
        check_member_name(name, archive)
        if (not isinstance(entry, dict) or not _SHA256.match(str(entry.get("sha256", "")))
                or not isinstance(entry.get("bytes"), int) or entry["bytes"] < 0):
            raise BundleError(f"{where}: file {name!r} lacks a sha256 or a byte count")
    expected = expected_files(manifest)
    listed = set(manifest["files"])
    extra, absent = sorted(listed - set(expected)), sorted(set(expected) - listed)
    if extra or absent:
        raise BundleError(f"{where}: its files do not match its cells (unknown: {extra[:3]}, unlisted: {absent[:3]})")
    return manifest


def read_manifest(archive: str | Path) -> dict:
    """The checked manifest, read from the archive's first member only (cheap on a large archive)."""
    archive = Path(archive)
    if not archive.is_file():
        raise BundleError(f"{archive}: results bundle not found")
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise BundleError(f"{archive}: the first member is {getattr(first, 'name', None)!r}, not {MANIFEST}: "
                                  f"not an svf results bundle")
            if first.size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{archive}: {MANIFEST} of {first.size} bytes is implausibly large; refused")
            text = tar.extractfile(first).read()
    except READ_ERRORS as exc:
        raise BundleError(f"{archive}: truncated or not a tar archive ({type(exc).__name__}: {exc})") from None
    try:
        manifest = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{archive}: {MANIFEST} is not valid JSON ({exc})") from None
    return _check_manifest(manifest, archive)


# --- specs --------------------------------------------------------------------------------------------------------

def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def spec_differences(bundled: Any, here: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two specs differ, each with both values: ``recipe.epochs (bundle 25, here 2)``."""
    if isinstance(bundled, dict) and isinstance(here, dict):
        out = []
        for key in sorted(set(bundled) | set(here), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in bundled:
                out.append(f"{name} (bundle: absent, here {_short(here[key])})")
            elif key not in here:
                out.append(f"{name} (bundle {_short(bundled[key])}, here: absent)")
            else:
                out += spec_differences(bundled[key], here[key], name)
        return out
    return [] if bundled == here else [f"{prefix or '<spec>'} (bundle {_short(bundled)}, here {_short(here)})"]


@dataclass
class ImportPlan:
    """What a config takes from a bundle: its cells found there, the base learners they need, and what it lacks."""

    archive: str
    cells: list[dict] = field(default_factory=list)
    base_learners: list[str] = field(default_factory=list)
    not_in_config: list[str] = field(default_factory=list)   # bundled cells this config's tables do not use
    not_in_bundle: list[str] = field(default_factory=list)   # this config's cells the bundle lacks (they train)

    def outputs(self) -> list[str]:
        """The path templates an import writes: rule train's outputs, the recorded metrics, the base learners."""
        names = (*paths.TRAIN_OUTPUTS, paths.RECORDED_METRICS)
        out = [paths.cell_file(cell, name) for cell in self.cells for name in names]
        for key in self.base_learners:
            dataset, backbone, fold = key.split("/")
            out += [paths.base_learner_file(dataset, backbone, fold.removeprefix("fold"), name)
                    for name in BASE_LEARNER_FILES]
        return out


def _refusal(archive: str, refused: list[tuple[str, list[str]]], total: int) -> SpecMismatchError:
    shown = "; ".join(f"{name}: {', '.join(diffs[:6])}{' ...' if len(diffs) > 6 else ''}"
                      for name, diffs in refused[:8])
    more = f"; and {len(refused) - 8} more" if len(refused) > 8 else ""
    return SpecMismatchError(
        f"{archive}: {len(refused)} of {total} bundled entries this config needs were made under a different spec "
        f"and are refused (nothing imported). {shown}{more}. Use the bundle's configuration (its manifest records "
        f"every spec) or drop results_from to train these cells here.")


def plan_import(manifest: Mapping[str, Any], config: Mapping[str, Any], tables: Mapping[str, Any],
                archive: str | Path) -> ImportPlan:
    """The bundled cells of every table of ``config`` (its folds, shots and seeds), each checked against the spec
    this config gives it; BAM base learners too when the config trains them. Raises SpecMismatchError naming every
    refused cell and the keys that differ; nothing is refused silently."""
    plan = ImportPlan(archive=str(archive))
    needed = config_cells(config, tables, list(tables_of(tables)))
    needed_ids = {cell_id(c) for c in needed}
    refused: list[tuple[str, list[str]]] = []
    for cell in needed:
        cid = cell_id(cell)
        entry = manifest["cells"].get(cid)
        if entry is None:
            plan.not_in_bundle.append(cid)
            continue
        diffs = spec_differences(entry["spec"], cell_spec(config, Cell.from_mapping(cell)))
        if diffs:
            refused.append((cid, diffs))
        plan.cells.append(cell)
    plan.not_in_config = sorted(set(manifest["cells"]) - needed_ids)
    if config["weights"].get("bam_base_learner", "train") == "train":
        for dataset, backbone, fold in base_learners_of(plan.cells):
            key = base_learner_key(dataset, backbone, fold)
            entry = manifest["base_learners"].get(key)
            if entry is None:
                continue  # rule train_base makes it here
            diffs = spec_differences(entry["spec"], base_learner_spec(config, dataset, backbone, fold))
            if diffs:
                refused.append((f"base learner {key}", diffs))
            plan.base_learners.append(key)
    if refused:
        raise _refusal(str(archive), refused, len(plan.cells) + len(plan.base_learners))
    return plan


def describe_plan(plan: ImportPlan) -> str:
    text = (f"{plan.archive}: {len(plan.cells)} cell(s) and {len(plan.base_learners)} BAM base learner(s) to import "
            f"(their training is done; evaluation re-runs here)")
    if plan.not_in_bundle:
        text += f"; {len(plan.not_in_bundle)} cell(s) of this config are not in the bundle and train here"
    if plan.not_in_config:
        text += f"; {len(plan.not_in_config)} bundled cell(s) are outside this config's tables and stay unused"
    return text
