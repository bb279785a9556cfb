"""A tiny generator of fake per-cell outputs (the engine's contract), shared by the report tests
(`from fakes import ...`); tests/report/test_collect.py checks that the fakes follow the contract the report code
reads, so a contract change shows up in one place.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from svf.pipeline.cells import CELL_KEYS, cell_id

ROOT = Path(__file__).resolve().parents[1]
TABLES_YAML = ROOT / "config" / "tables.yaml"
PAPER_CSV = ROOT / "config" / "paper_results.csv"
SCHEMA = ROOT / "workflow" / "schemas" / "tables.schema.yaml"

#: What a copy of the workflow needs to run (environment.yml: every rule's conda environment, which Snakemake
#: records in each job's metadata even without --sdm conda).
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "environment.yml")


def copy_workflow(dest: Path) -> Path:
    """A runnable copy of the workflow in ``dest`` (so a test's outputs stay out of the repository)."""
    for name in WORKFLOW_FILES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, dest / name)
    (dest / "profiles").symlink_to("workflow/profiles")
    return dest


BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
#: Layer names of a small ResNet's layer3 (two blocks), as the engine's singular_values.json keys them.
SV_LAYERS = ("layer2.0.conv2", "layer3.0.conv2", "layer3.0.conv3", "layer3.1.conv2", "layer3.1.conv3")


def _seed_of(cid: str) -> int:
    return sum(cid.encode()) % (2**31)


def write_fake_cell(cells_root: Path, benchmarks: Path | None, cell: Mapping[str, Any], miou: float, *,
                    config_hash: str = "cafe00000000", device: str = "cpu", epochs: int = 3,
                    train_s: float = 3600.0, eval_s: float = 360.0, n_sv: int = 40) -> Path:
    """Write metrics.json, train_log.csv, singular_values.json (SVF policies) and benchmark TSVs of a cell."""
    cid = cell_id(cell)
    rng = np.random.default_rng(_seed_of(cid))
    cell_dir = cells_root / cid
    cell_dir.mkdir(parents=True, exist_ok=True)
    classes = {str(c): float(miou + d) for c, d in zip(range(1 + 5 * cell["fold"], 6 + 5 * cell["fold"]),
                                                       (-2.0, -1.0, 0.0, 1.0, 2.0))}
    metrics = {
        "cell": {k: cell[k] for k in CELL_KEYS}, "cell_id": cid, "miou": miou, "fb_iou": miou + 10.0,
        "class_iou": classes, "episodes": 1000, "seeds": [321], "protocol": "svf-code",
        "per_seed": [{"seed": 321, "miou": miou, "fb_iou": miou + 10.0}], "epochs_run": epochs,
        "best_epoch": epochs - 1, "train_wall_time_s": train_s * 0.9, "eval_wall_time_s": eval_s * 0.9,
        "trainable_params": 4929794, "config_hash": config_hash, "code_version": "0.1.0+test", "device": device,
    }
    (cell_dir / "metrics.json").write_text(json.dumps(metrics))
    steps = 4
    lines = ["epoch,step,loss,lr_head,lr_backbone,val_miou,time_s"]
    for e in range(epochs):
        for s in range(steps):
            val = f"{miou - (epochs - 1 - e):.3f}" if s == steps - 1 else ""
            lines.append(f"{e},{e * steps + s},{1.0 / (1 + e + s / steps):.4f},0.015,0.0015,{val},{e * 10 + s}")
    (cell_dir / "train_log.csv").write_text("\n".join(lines) + "\n")
    if str(cell["policy"]).startswith("svf"):
        before = {name: sorted(rng.uniform(0.1, 5.0, n_sv), reverse=True) for name in SV_LAYERS}
        after = {name: [v * (1 + rng.normal(0, 0.05)) for v in values] for name, values in before.items()}
        (cell_dir / "singular_values.json").write_text(json.dumps({"before": before, "after": after}))
    if benchmarks is not None:
        for stage, seconds in (("train", train_s), ("evaluate", eval_s)):
            path = benchmarks / stage / f"{cid}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{BENCH_HEADER}\n{seconds:.4f}\t1:00:00\t1000\t2000\t900\t950\t1\t2\t95.0\t{seconds}\n")
    return cell_dir


def write_fake_cells(cells_root: Path, benchmarks: Path | None, cells: Iterable[Mapping[str, Any]],
                     miou: Callable[[Mapping[str, Any]], float], **kwargs: Any) -> list[str]:
    """Write every cell with mIoU ``miou(cell)``; returns the cell ids."""
    return [cell_id(c) for c in cells if write_fake_cell(cells_root, benchmarks, c, miou(c), **kwargs)]


def write_fake_trained_cell(cells_root: Path, cell: Mapping[str, Any], miou: float, spec: Mapping[str, Any],
                            **kwargs: Any) -> Path:
    """A finished cell as rules train and evaluate leave it: write_fake_cell's files plus a small model.pt (the
    trained-tensors layout of svf/engine/tasks/train.py) and train_summary.json holding ``spec``."""
    import torch

    cell_dir = write_fake_cell(cells_root, None, cell, miou, **kwargs)
    cid = cell_id(cell)
    generator = torch.Generator().manual_seed(_seed_of(cid))
    state = {"layer4.0.conv2.vector_S": torch.rand(8, generator=generator),
             "cls_meta.3.weight": torch.randn(2, 8, 1, 1, generator=generator)}
    torch.save({"cell_id": cid, "cell": dict(cell), "policy": cell["policy"], "epoch": 2, "state": state},
               cell_dir / "model.pt")
    if not (cell_dir / "singular_values.json").exists():
        (cell_dir / "singular_values.json").write_text(json.dumps({"before": {}, "after": {}}))
    summary = {"cell": dict(cell), "cell_id": cid, "epochs_run": kwargs.get("epochs", 3), "spec": dict(spec),
               "config_hash": kwargs.get("config_hash", "cafe00000000"), "device": "cpu"}
    (cell_dir / "train_summary.json").write_text(json.dumps(summary))
    return cell_dir


def write_fake_base_learner(directory: Path) -> Path:
    """BAM's stage-1 outputs as rule train_base leaves them: model.pt (a state dict) and train_log.csv."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"cls.4.weight": torch.zeros(3, 4, 1, 1)}, directory / "model.pt")
    (directory / "train_log.csv").write_text("epoch,step,loss\n0,0,1.0\n")
    return directory
