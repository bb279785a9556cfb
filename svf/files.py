"""Files: atomic writes (a reader, or a killed job, never sees a half-written file under its final name) and safe
reads of torch files (tensors and plain data only; errors name the file and how to remake it)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import ModelFileError

#: The source checkout this package runs from: config/ and workflow/ (the schemas, the reference lists) live there.
REPO_ROOT = Path(__file__).resolve().parents[1]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status); elsewhere set and
    restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], durable: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path``, fsync it (unless ``durable=False``: the many masks
    of a prepared dataset, which a rerun re-makes) and rename it onto ``path``; the temporary file is removed on any
    failure. The file gets the mode a plainly created file would (0666 less the umask: 0644 under umask 022), not
    mkstemp's private 0600, so colleagues on a shared file system can read the results."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())
        if durable:
            with open(tmp_path, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return final


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def torch_save(path: str | os.PathLike, value: Any) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(value, tmp))


def move_file(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Put a finished file under its final name: a rename on the same file system, else an atomic copy (see
    ``atomic_write``) and the source removed. Either way no reader sees a partial file under ``path``."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        atomic_write(final, lambda tmp: shutil.copyfile(source, tmp))
        Path(source).unlink()
    return final


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_document(path: str | os.PathLike, parse: Callable[[str], Any], parse_error: type[Exception] | tuple,
                  error: type[Exception], missing: str, kind: str) -> Any:
    """``parse(text of path)``; a missing file or a parse error becomes ``error`` naming the file."""
    try:
        return parse(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except parse_error as exc:
        raise error(f"{path}: not valid {kind}: {exc}") from None


# --- reading torch files: tensors and plain data only, errors that name the file and the rule that makes it -------


class UnreadableFileError(ModelFileError):
    """A torch file is truncated or corrupt; the message names it and says how to remake it."""


class UnsafeFileError(ModelFileError):
    """A torch file holds pickled objects besides tensors and plain data (code could run on load): refused."""


def torch_load(path: str | os.PathLike, what: str, remedy: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: only tensors, numbers, strings and containers, never
    arbitrary pickled objects (a file someone hands you cannot run code). ``what`` names the file's role ("BAM base
    learner"), ``remedy`` what to do about a bad one ("delete it; `snakemake` re-runs rule train_base")."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; {remedy}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeFileError(f"refusing to load {what} {path}: it holds pickled objects other than tensors and "
                              f"plain data, which could run code on load ({first}). Only load files you trust; "
                              f"{remedy}") from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise UnreadableFileError(f"cannot read {what} {path} (truncated or corrupt: {type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                                  f"{remedy}") from None
