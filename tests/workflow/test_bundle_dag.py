"""`results_from` in the DAG: a bundle's cells (and BAM base learners) come from rule import_bundle instead of
train/train_base, the rest still trains; a bundled cell whose spec differs stops Snakemake before any job, naming the
keys (dry runs on the paper config, bundles of fake cells)."""
from __future__ import annotations

from pathlib import Path

import yaml

from fakes import TABLES_YAML, write_fake_base_learner, write_fake_trained_cell
from svf.bundle.export import export_bundle
from svf.pipeline import paths
from svf.pipeline.cells import Cell, cell_id
from svf.pipeline.specs import cell_spec, load_config
from svf.pipeline.tables import config_cells, load_tables
from test_dag import ROOT, job_counts, snakemake


# BAM's stage 1 in the DAG, so that the bundle carries the base learner (with BAM's published base learners, the
# paper's default, it carries none: every reviewer imports the same published files)
TRAINED_BASE_LEARNERS = {"bam_base_learner": "train"}


def fake_bundle(tmp: Path) -> tuple[Path, list[dict]]:
    """A bundle of Table 1's fold-0 1-shot PASCAL ResNet-50 BAM cells (†: frozen, SVF) and their base learner."""
    roots = {key: str(tmp / key) for key in ("results", "resources", "logs", "benchmarks", "figures")}
    overlay = tmp / "export.yaml"
    overlay.write_text(yaml.safe_dump({"pathvars": roots, "tables": {"file": str(TABLES_YAML),
                                                                     "build": ["table1"], "folds": [0]},
                                       "weights": TRAINED_BASE_LEARNERS}))
    config = load_config([str(ROOT / "config" / "config.yaml"), str(overlay)])
    cells = [c for c in config_cells(config, load_tables(TABLES_YAML), ["table1"])
             if c["method"] == "bam" and c["backbone"] == "resnet50" and c["setting"] == "dagger" and c["shot"] == 1]
    for cell in cells:
        write_fake_trained_cell(tmp / "results" / "cells", cell, 50.0, cell_spec(config, Cell.from_mapping(cell)))
    write_fake_base_learner(Path(paths.expand_pathvars(paths.BASE_LEARNER_DIR, config).format(
        dataset="pascal", backbone="resnet50", fold=0)))
    archive = tmp / "bundle.tar.gz"
    export_bundle(config, archive, log=lambda line: None)
    return archive, cells


def test_bundled_cells_are_imported_not_trained(tmp_path):
    archive, cells = fake_bundle(tmp_path)
    assert len(cells) == 2
    trained = tmp_path / "trained.yaml"
    trained.write_text(yaml.safe_dump({"weights": TRAINED_BASE_LEARNERS}))
    plain = snakemake("-n", "table1", "--configfile", "config/config.yaml", str(trained))
    imported = snakemake("-n", "table1", "--configfile", "config/config.yaml", str(trained), "--config",
                         f"results_from={archive}")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    before, after = job_counts(plain.stdout), job_counts(imported.stdout)
    assert after["import_bundle"] == 1 and after["train"] == before["train"] - 2
    assert after["evaluate"] == before["evaluate"] == 144  # every cell is still evaluated here
    assert after["train_base"] == before["train_base"] - 1
    assert "2 cell(s) and 1 BAM base learner(s) to import" in imported.stderr


def test_a_bundled_cell_with_another_spec_stops_snakemake_before_any_job(tmp_path):
    archive, cells = fake_bundle(tmp_path)
    overlay = tmp_path / "other.yaml"
    overlay.write_text(yaml.safe_dump({"results_from": str(archive), "model": {"reduce_dim": 128},
                                       "weights": TRAINED_BASE_LEARNERS}))
    result = snakemake("-n", "table1", "--configfile", "config/config.yaml", str(overlay))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "model.reduce_dim (bundle 256, here 128)" in output and cell_id(cells[0]) in output
    assert "Job stats" not in output
