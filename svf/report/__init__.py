"""Results collection, tables and figures.

- ``collect``: per-cell ``metrics.json`` + Snakemake benchmark TSVs -> one row per cell in ``results.csv``;
- ``tables``: ``results.csv`` + ``config/tables.yaml`` + ``config/paper_results.csv`` -> csv/md/tex per table;
- ``figures``: Figure 6, training curves, reproduced-vs-paper overview.

Every output is written atomically (temporary file in the same directory, then rename), so an interrupted job
never leaves a truncated file under its final name for Snakemake to trust.
"""
from __future__ import annotations

from ..files import atomic_write
from ..files import write_text as atomic_write_text

__all__ = ["atomic_write", "atomic_write_text"]
