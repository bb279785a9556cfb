"""Results bundles: every trained cell of a run in one archive, and tables rebuilt elsewhere by evaluation alone.

- ``manifest``: the archive's layout, its manifest (a sha256 per file, each cell's spec), the checks of member
  paths, and which bundled cells a config can import (a cell whose spec differs is refused). Light (no torch):
  the Snakefile reads it while building the DAG;
- ``export``: ``svf bundle export``, the finished cells of a config (or of some tables) into one archive;
- ``verify``: ``svf bundle import`` / ``verify``, the archive extracted into a temporary folder, every file checked
  (path, kind, size, checksum, parse; tensors with ``weights_only``), then moved under its final name;
- ``commands``: the ``svf bundle`` command line.

docs/bundles.md describes the format and how to publish and check a bundle.
"""
