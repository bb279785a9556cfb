"""``svf bundle export``: every finished cell of a config (or of some of its tables) in one archive.

A cell is finished when rule train's outputs and its metrics.json exist. Its spec is the one it trained under:
``train_summary.json``'s own copy, or, for cells trained before summaries held it, the config's when the summary's
config hash equals the config's (otherwise the cell is refused: the config given is not the one it trained under).
BAM's base learners of the bundled cells come too when the config trains them, so that a BAM cell re-evaluates
without training anything. The archive is written to a temporary name and renamed (svf/files.py), then read back
and checked against its own manifest before the command reports success.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import files
from ..pipeline import paths
from ..pipeline.cells import Cell, cell_id
from ..pipeline.specs import base_learner_spec, cell_spec, config_hash
from ..pipeline.tables import base_learners_of, config_cells, load_tables
from .manifest import (BASE_LEARNER_FILES, CELL_FILES, FORMAT, FORMAT_VERSION, MANIFEST, BundleError,
                       base_learner_key, base_learner_member, cell_member)

GZIP_LEVEL = 6  # trained float tensors hardly compress; JSON and CSV shrink 3-5x at any level


class _HashingWriter:
    """The archive's bytes on their way to disk, hashed (its sha256 without a second read)."""

    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _compressed(out: Path) -> bool:
    name = out.name
    if name.endswith((".tar.gz", ".tgz")):
        return True
    if name.endswith(".tar"):
        return False
    raise BundleError(f"{out}: a bundle is a .tar.gz (or .tgz, or an uncompressed .tar)")


def write_archive(tmp: Path, manifest: Mapping[str, Any], sources: Sequence[tuple[str, Path]], compress: bool,
                  mtime: float) -> str:
    """The tar stream: manifest.json first, then every (member, file); returns the archive's sha256."""
    def info(name: str, size: int) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.size, entry.mtime, entry.mode = size, int(mtime), 0o644
        return entry

    text = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")
    with open(tmp, "wb") as raw:
        sink = _HashingWriter(raw)
        gz = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=int(mtime)) if compress else None
        with tarfile.open(fileobj=gz or sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info(MANIFEST, len(text)), io.BytesIO(text))
            for name, path in sources:
                with open(path, "rb") as handle:
                    tar.addfile(info(name, manifest["files"][name]["bytes"]), handle)
        if gz is not None:
            gz.close()
        return sink.digest.hexdigest()


def _trained_spec(config: Mapping[str, Any], cell: Mapping[str, Any], cell_dir: Path) -> tuple[dict | None, str]:
    """(spec, '') or (None, why not) for a finished cell."""
    cid = cell_id(cell)
    summary = json.loads((cell_dir / paths.TRAIN_SUMMARY).read_text(encoding="utf-8"))
    if isinstance(summary.get("spec"), dict):
        spec = summary["spec"]
        return (spec, "") if spec.get("cell_id") == cid else (None, f"its summary's spec names {spec.get('cell_id')}")
    here = config_hash(config)
    if summary.get("config_hash") == here:
        return cell_spec(config, Cell.from_mapping(cell)), ""
    return None, f"trained under config hash {summary.get('config_hash')!r}, the config given hashes to {here!r}"


def _entry(path: Path) -> dict:
    return {"sha256": files.sha256_of(path), "bytes": path.stat().st_size}


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _cell_entries(config: Mapping[str, Any], finished: Sequence[Mapping[str, Any]], by_table: Mapping[str, list],
                  where: Callable[[str], Path], file_entries: dict, sources: list) -> dict[str, dict]:
    """The manifest's entry of every finished cell (its files added to ``file_entries`` and ``sources``); a cell
    the config did not train is an error naming it."""
    refused, entries = [], {}
    for cell in finished:
        cid = cell_id(cell)
        cell_dir = where(paths.cell_file(cell, paths.MODEL)).parent
        spec, why = _trained_spec(config, cell, cell_dir)
        if spec is None:
            refused.append(f"{cid}: {why}")
            continue
        metrics = json.loads((cell_dir / paths.METRICS).read_text(encoding="utf-8"))
        entries[cid] = {"cell": dict(cell), "kind": cell["policy"], "spec": spec,
                        "tables": [n for n in by_table if any(cell_id(c) == cid for c in by_table[n])],
                        "config_hash": metrics.get("config_hash"), "code_version": metrics.get("code_version"),
                        "device": metrics.get("device"), "versions": metrics.get("versions"),
                        "miou": metrics.get("miou")}
        for name in CELL_FILES:
            member = cell_member(cid, name)
            file_entries[member] = _entry(cell_dir / name)
            sources.append((member, cell_dir / name))
    if refused:
        raise BundleError(f"{len(refused)} cell(s) cannot be bundled under this config: " + "; ".join(refused[:5])
                          + (f"; and {len(refused) - 5} more" if len(refused) > 5 else ""))
    return entries


def _learner_entries(config: Mapping[str, Any], finished: Sequence[Mapping[str, Any]], where: Callable[[str], Path],
                     file_entries: dict, sources: list) -> tuple[dict[str, dict], list[str]]:
    """(entries, keys not found) of BAM's base learners of the finished cells when the config trains them (their
    files added to ``file_entries`` and ``sources``)."""
    learners, missing = {}, []
    if config["weights"].get("bam_base_learner", "train") != "train":
        return learners, missing
    for dataset, backbone, fold in base_learners_of(finished):
        key = base_learner_key(dataset, backbone, fold)
        found = [where(paths.base_learner_file(dataset, backbone, fold, n)) for n in BASE_LEARNER_FILES]
        if not all(p.is_file() for p in found):
            missing.append(key)
            continue
        learners[key] = {"dataset": dataset, "backbone": backbone, "fold": int(fold),
                         "spec": base_learner_spec(config, dataset, backbone, fold)}
        for name, path in zip(BASE_LEARNER_FILES, found):
            member = base_learner_member(key, name)
            file_entries[member] = _entry(path)
            sources.append((member, path))
    return learners, missing


def _totals(entries: Mapping[str, dict], learners: Mapping[str, dict], file_entries: Mapping[str, dict],
            by_table: Mapping[str, list]) -> dict:
    """Counts and bytes: in all, of the base learners, per kind of cell and per table."""
    def cell_bytes(cid: str) -> int:
        return sum(file_entries[cell_member(cid, n)]["bytes"] for n in CELL_FILES)

    by_kind: dict[str, dict] = {}
    for cid, entry in entries.items():
        kind = by_kind.setdefault(entry["kind"], {"cells": 0, "bytes": 0})
        kind["cells"] += 1
        kind["bytes"] += cell_bytes(cid)
    return {
        "cells": len(entries), "base_learners": len(learners), "files": len(file_entries),
        "bytes": sum(v["bytes"] for v in file_entries.values()),
        "base_learner_bytes": sum(v["bytes"] for k, v in file_entries.items() if not k.startswith("cells/")),
        "by_kind": by_kind,
        "by_table": {n: {"cells": sum(cell_id(c) in entries for c in cells),
                         "bytes": sum(cell_bytes(cell_id(c)) for c in cells if cell_id(c) in entries)}
                     for n, cells in by_table.items()},
    }


def _write_checked(out: Path, manifest: Mapping[str, Any], sources: Sequence[tuple[str, Path]], compress: bool,
                   created: float) -> str:
    """Write the archive atomically and read it back against its manifest; returns its sha256."""
    digest: dict[str, str] = {}
    files.atomic_write(out, lambda tmp: digest.update(sha256=write_archive(tmp, manifest, sources, compress, created)))
    from .verify import scan_archive  # read back: a bundle that fails its own checks is not reported as written

    read_back = scan_archive(out, manifest, None)
    if read_back != digest["sha256"]:
        raise BundleError(f"{out}: read back with sha256 {read_back}, written as {digest['sha256']}")
    return digest["sha256"]


def _report(log: Callable[[str], None], out: Path, sha256: str, manifest: Mapping[str, Any]) -> None:
    totals = manifest["totals"]
    unfinished, learners_missing = manifest["unfinished_cells"], manifest["missing_base_learners"]
    log(f"svf bundle export: {totals['cells']} cell(s), {totals['base_learners']} BAM base learner(s) -> {out} "
        f"({_mib(out.stat().st_size)} on disk, {_mib(totals['bytes'])} of files), sha256 {sha256}")
    if unfinished:
        log(f"  left out, not finished: {len(unfinished)} cell(s), e.g. {unfinished[0]}")
    if learners_missing:
        log(f"  BAM base learners not found (an importer trains them): {', '.join(learners_missing)}")
    for name, row in totals["by_table"].items():
        log(f"  {name}: {row['cells']} cell(s), {_mib(row['bytes'])}")
    for kind, row in sorted(totals["by_kind"].items()):
        log(f"  kind {kind}: {row['cells']} cell(s), {_mib(row['bytes'])} ({_mib(row['bytes'] / row['cells'])} "
            f"per cell)")
    if totals["base_learners"]:
        log(f"  base learners: {totals['base_learners']}, {_mib(totals['base_learner_bytes'])}")


def export_bundle(config: Mapping[str, Any], out: str | Path, tables: Sequence[str] | None = None,
                  results: str | None = None, resources: str | None = None, code_version: str = "",
                  log: Callable[[str], None] = print) -> dict:
    """Write the bundle of the finished cells of ``tables`` (default: the config's ``tables.build``); returns the
    manifest plus ``archive_bytes`` and ``sha256``. ``results``/``resources`` default to the config's pathvars."""
    from ..engine.loop.device import library_versions

    out = Path(out)
    compress = _compressed(out)

    def where(template: str) -> Path:
        return Path(paths.expand_pathvars(template, config, results=results, resources=resources))

    doc = load_tables(config["tables"]["file"])
    names = list(tables or config["tables"]["build"])
    by_table = {name: config_cells(config, doc, [name]) for name in names}
    cells = list({cell_id(c): c for name in names for c in by_table[name]}.values())
    finished = [c for c in cells if all(where(paths.cell_file(c, n)).is_file() for n in CELL_FILES)]
    sources: list[tuple[str, Path]] = []
    file_entries: dict[str, dict] = {}
    entries = _cell_entries(config, finished, by_table, where, file_entries, sources)
    if not entries:
        raise BundleError(f"no finished cell among the {len(cells)} of {names} (under {where(paths.CELLS_ROOT)}); "
                          f"train them first (`snakemake bundle` does)")
    learners, learners_missing = _learner_entries(config, finished, where, file_entries, sources)
    created = time.time()
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "code_version": code_version, "config_hash": config_hash(config), "tables": names,
        "exported_with": library_versions(),
        "cells": entries, "base_learners": learners, "files": file_entries,
        "totals": _totals(entries, learners, file_entries, by_table),
        "unfinished_cells": [cell_id(c) for c in cells if c not in finished],
        "missing_base_learners": learners_missing,
    }
    sha256 = _write_checked(out, manifest, sources, compress, created)
    _report(log, out, sha256, manifest)
    return {**manifest, "archive_bytes": out.stat().st_size, "sha256": sha256}
