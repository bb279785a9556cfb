"""Reading a results bundle back: ``svf bundle verify`` and ``svf bundle import``.

Order of an import, so that nothing reaches a final name unchecked: the manifest and the plan (every bundled cell
this config needs, each spec compared with this config's; svf/bundle/manifest.py), then every member streamed into
a temporary folder next to the results (its name checked before anything is written, its size and sha256 against
the manifest; a link, a device, an unknown or duplicate name, a truncated archive are refused with the member's
name), then every file parsed as its kind (JSON, CSV, tensors loaded with ``weights_only``: data only, no code runs),
and only then the files moved under their final names (a rename, or svf/files.py's atomic copy across file
systems). The bundle's metrics.json of a cell becomes ``recorded_metrics.json``: its ``metrics.json`` is the
re-evaluation that rule evaluate then runs here.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import files
from ..pipeline import paths
from ..pipeline.cells import cell_id
from ..pipeline.tables import load_tables
from .manifest import (BASE_LEARNER_FILES, KINDS, MANIFEST, READ_ERRORS, BundleError, ImportPlan, base_learner_member,
                       cell_member, check_member_name, describe_plan, plan_import, read_manifest)

CHUNK = 1 << 20


class _HashingReader:
    """The archive file as tarfile reads it, hashed on the way (the whole archive's sha256 in the same pass)."""

    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def finish(self) -> str:
        for _ in iter(lambda: self.read(CHUNK), b""):
            pass
        return self.digest.hexdigest()


class _WriteError(Exception):
    """Writing an extracted file failed (disk full, ...): not to be reported as a corrupt archive."""


def _member_type(member: tarfile.TarInfo) -> str:
    for test, name in ((member.issym, "symbolic link"), (member.islnk, "hard link"), (member.ischr, "device"),
                       (member.isblk, "device"), (member.isfifo, "FIFO")):
        if test():
            return name
    return "special member"


def _copy_member(source, target: Path | None) -> str:
    """Stream one member into ``target`` (when given, fsync'd) and return its sha256."""
    digest = hashlib.sha256()
    handle = None
    try:
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = open(target, "xb")  # a fresh name: the staging folder is ours, nothing may be there
        for block in iter(lambda: source.read(CHUNK), b""):
            digest.update(block)
            if handle is not None:
                try:
                    handle.write(block)
                except OSError as exc:
                    raise _WriteError(f"{target}: {exc}") from None
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if handle is not None:
            handle.close()
    return digest.hexdigest()


def scan_archive(archive: str | Path, manifest: Mapping[str, Any], dest: str | Path | None) -> str:
    """Check every member after the manifest (name, type, listed, size, sha256), writing it under ``dest`` when
    given; then that every listed file came. Returns the archive's sha256. Raises BundleError naming the member."""
    archive = Path(archive)
    expected = manifest["files"]
    seen: set[str] = set()
    current = "<start>"
    try:
        with open(archive, "rb") as raw:
            reader = _HashingReader(raw)
            with tarfile.open(fileobj=reader, mode="r|*") as tar:
                for index, member in enumerate(tar):
                    current = member.name
                    if index == 0:
                        if member.name != MANIFEST:
                            raise BundleError(f"{archive}: the first member is {member.name!r}, not {MANIFEST}")
                        continue
                    name = check_member_name(member.name, archive)
                    if member.isdir():
                        continue  # folders follow from the files' names; nothing to write
                    if not member.isfile():
                        raise BundleError(f"{archive}: member {name!r} is a {_member_type(member)}, not a regular "
                                          f"file; refused")
                    if name not in expected:
                        raise BundleError(f"{archive}: member {name!r} is not in the manifest (unknown file); "
                                          f"refused")
                    if name in seen:
                        raise BundleError(f"{archive}: member {name!r} appears twice; refused")
                    if member.size != expected[name]["bytes"]:
                        raise BundleError(f"{archive}: member {name!r} has {member.size} bytes, the manifest says "
                                          f"{expected[name]['bytes']}; refused")
                    digest = _copy_member(tar.extractfile(member), Path(dest) / name if dest is not None else None)
                    if digest != expected[name]["sha256"]:
                        raise BundleError(f"{archive}: checksum mismatch for {name!r} (sha256 {digest}, the manifest "
                                          f"says {expected[name]['sha256']}); refused")
                    seen.add(name)
            archive_sha256 = reader.finish()
    except _WriteError as exc:
        raise OSError(f"cannot write an extracted file: {exc}") from None
    except READ_ERRORS as exc:
        raise BundleError(f"{archive}: truncated or corrupt archive (while reading {current!r}: "
                          f"{type(exc).__name__}: {exc}); refused") from None
    missing = [name for name in expected if name not in seen]
    if missing:
        raise BundleError(f"{archive}: {len(missing)} file(s) of the manifest are missing (a truncated archive?), "
                          f"the first {missing[0]!r}; refused")
    return archive_sha256


# --- contents -----------------------------------------------------------------------------------------------------

def _read(path: Path, name: str, archive: Path) -> Any:
    """A staged file parsed as its kind; errors name the member."""
    kind = KINDS.get(Path(name).suffix)
    try:
        if kind == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        if kind == "csv":
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            if not rows or not rows[0]:
                raise ValueError("no header")
            return rows
        if kind == "tensors":
            return files.torch_load(path, f"bundled {name}", "the bundle is refused")
    except (UnicodeDecodeError, ValueError, csv.Error, files.UnreadableFileError, files.UnsafeFileError) as exc:
        raise BundleError(f"{archive}: {name!r} is not readable as {kind}: {exc}") from None
    raise BundleError(f"{archive}: {name!r} is of no kind a bundle may hold ({sorted(KINDS)})")


def _is_tensor_dict(value: Any) -> bool:
    import torch

    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


def check_contents(archive: str | Path, manifest: Mapping[str, Any], root: str | Path) -> None:
    """Every staged file parses as its kind, and each cell's files name that cell."""
    archive, root = Path(archive), Path(root)
    for name in manifest["files"]:
        value = _read(root / name, name, archive)
        parts = name.split("/")
        if parts[0] == "cells":
            cid, leaf = "/".join(parts[1:-1]), parts[-1]
            if leaf == paths.MODEL and not (isinstance(value, dict) and value.get("cell_id") == cid
                                            and _is_tensor_dict(value.get("state"))):
                raise BundleError(f"{archive}: {name!r} is not the trained tensors of cell {cid}")
            if leaf in (paths.METRICS, paths.TRAIN_SUMMARY) and not (isinstance(value, dict)
                                                                    and value.get("cell_id") == cid):
                raise BundleError(f"{archive}: {name!r} does not belong to cell {cid}")
        elif parts[-1] == paths.MODEL and not _is_tensor_dict(value):
            raise BundleError(f"{archive}: {name!r} is not a base learner's tensors")


def verify_bundle(archive: str | Path, log: Callable[[str], None] = print) -> dict:
    """Everything an import checks except the config: manifest, members, checksums, contents."""
    manifest = read_manifest(archive)
    with tempfile.TemporaryDirectory(prefix="svf-bundle-verify-") as staging:
        digest = scan_archive(archive, manifest, staging)
        check_contents(archive, manifest, staging)
    totals = manifest["totals"]
    log(f"{archive}: verified {len(manifest['files'])} files ({totals['cells']} cells, {totals['base_learners']} base "
        f"learners, {totals['bytes'] / 2**20:.1f} MiB), sha256 {digest}")
    return {"manifest": manifest, "sha256": digest}


# --- placing ------------------------------------------------------------------------------------------------------

def _moves(plan: ImportPlan, staging: Path, where: Callable[[str], Path]) -> list[tuple[str, Path]]:
    """(member, final path) of every file the plan imports; the bundle's metrics.json becomes recorded_metrics."""
    moves = []
    for cell in plan.cells:
        cid = cell_id(cell)
        moves += [(cell_member(cid, name), where(paths.cell_file(cell, name))) for name in paths.TRAIN_OUTPUTS]
        moves.append((cell_member(cid, paths.METRICS), where(paths.cell_file(cell, paths.RECORDED_METRICS))))
    for key in plan.base_learners:
        dataset, backbone, fold = key.split("/")
        moves += [(base_learner_member(key, name),
                   where(paths.base_learner_file(dataset, backbone, fold.removeprefix("fold"), name)))
                  for name in BASE_LEARNER_FILES]
    return moves


def import_bundle(archive: str | Path, config: Mapping[str, Any], results: str | None = None,
                  resources: str | None = None, overwrite: bool = False,
                  log: Callable[[str], None] = print) -> dict:
    """Verify ``archive`` against ``config`` and place the cells it needs so that their training is done.

    ``results``/``resources`` are the roots of ``<results>``/``<resources>`` (default: the config's pathvars). A
    final file that exists with other contents is refused unless ``overwrite`` (Snakemake removes a job's outputs
    before it runs, so rule import_bundle never meets one)."""
    archive = Path(archive)
    manifest = read_manifest(archive)
    plan = plan_import(manifest, config, load_tables(config["tables"]["file"]), archive)
    log(describe_plan(plan))

    def where(template: str) -> Path:
        return Path(paths.expand_pathvars(template, config, results=results, resources=resources))

    results_root = where(paths.RESULTS_DIR)
    results_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-import-", dir=results_root))
    try:
        digest = scan_archive(archive, manifest, staging)
        check_contents(archive, manifest, staging)
        moves = _moves(plan, staging, where)
        clashes = [final for member, final in moves
                   if final.exists() and files.sha256_of(final) != manifest["files"][member]["sha256"]]
        if clashes and not overwrite:
            raise BundleError(f"{archive}: {len(clashes)} file(s) already exist with other contents, e.g. "
                              f"{clashes[0]}; nothing imported (pass --overwrite to replace them)")
        for member, final in moves:
            files.move_file(staging / member, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{archive}: sha256 {digest}; placed {len(plan.cells)} cell(s) and {len(plan.base_learners)} base "
        f"learner(s) under {results_root}")
    return {"plan": plan, "sha256": digest, "files": len(moves)}
