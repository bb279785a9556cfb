"""Results collection, tables and figures.

- ``collect``: per-cell ``metrics.json`` + Snakemake benchmark TSVs -> one row per cell in ``results.csv``;
- ``tables``: ``results.csv`` + ``config/tables.yaml`` + ``config/paper_results.csv`` -> csv/md/tex per table;
- ``figures``: Figure 6, training curves, reproduced-vs-paper overview.

Every output is written atomically (temporary file in the same directory, then rename), so an interrupted job
never leaves a truncated file under its final name for Snakemake to trust.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path``; the temp file is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
