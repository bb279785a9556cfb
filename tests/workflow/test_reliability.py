"""Faults injected into real runs: a training job killed with SIGKILL mid-run and the same `snakemake` command
again; a killed evaluation; config changes that must not retrain finished cells."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fakes import copy_workflow

ROOT = Path(__file__).resolve().parents[2]
CELL = "pascal/resnet50/baseline/dagger/svf/svf-code/1shot/fold0/seed321"
VOLATILE = {"eval_wall_time_s", "train_wall_time_s"}
pytestmark = pytest.mark.slow


def _workflow_copy(path: Path, overlay: dict) -> Path:
    copy_workflow(path)
    (path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return path


def _command(*extra):
    target = f"results/demo/cells/{CELL}/metrics.json"
    return [sys.executable, "-m", "snakemake", target, "--workflow-profile", "demo", "--configfile",
            "config/demo.yaml", "config/quick.yaml", "overlay.yaml", *extra]


def _metrics(work: Path) -> dict:
    metrics = json.loads((work / "results" / "demo" / "cells" / CELL / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


OVERLAY = {"recipe_overrides": {"epochs": 6, "max_episodes_per_epoch": 16}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    work = _workflow_copy(tmp_path_factory.mktemp("whole"), OVERLAY)
    result = subprocess.run(_command(), cwd=work, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return work


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def _training_process(work: Path):
    """The `svf train` process of the cell (a child of Snakemake's job shell)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "train" in cmdline and any(str(work) in part or CELL in part for part in cmdline):
            return proc
    raise AssertionError("no svf train process found")


def test_training_killed_mid_epoch_then_the_same_command_resumes_to_identical_metrics(uninterrupted, tmp_path):
    # warm start off: the training then runs in its own `python -m svf train` process, which we kill like an
    # out-of-memory killer or a preempting scheduler would
    work = _workflow_copy(tmp_path, {**OVERLAY, "warm_start": False})
    checkpoint = work / "resources" / "demo" / "checkpoints" / "cells" / CELL / "last.pt"
    process = subprocess.Popen(_command(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(checkpoint, process)
    _training_process(work).kill()  # SIGKILL, mid-epoch: epoch 1's checkpoint exists, later ones do not
    assert process.wait(timeout=300) != 0
    cell = work / "results" / "demo" / "cells" / CELL
    assert not (cell / "metrics.json").exists() and not (cell / "model.pt").exists()

    result = subprocess.run(_command(), cwd=work, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (work / "logs" / "demo" / "train" / f"{CELL}.log").read_text()
    assert "resuming after epoch" in log
    assert _metrics(work) == _metrics(uninterrupted)

    # a finished cell is never retrained: the same command again has nothing to do
    again = subprocess.run(_command("-n"), cwd=work, capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_snakemake_and_its_jobs_killed_then_unlock_and_rerun_resumes(uninterrupted, tmp_path):
    # the controller itself dies (warm start on: its server and the forked training must die with it)
    work = _workflow_copy(tmp_path, OVERLAY)
    checkpoint = work / "resources" / "demo" / "checkpoints" / "cells" / CELL / "last.pt"
    process = subprocess.Popen(_command(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    _wait_for(checkpoint, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    import psutil

    def leftovers():
        return [p for p in psutil.process_iter(["cmdline"]) if str(work) in " ".join(p.info["cmdline"] or [])
                or "svf.warm" in " ".join(p.info["cmdline"] or []) and p.info["cmdline"][-1] == str(process.pid)]

    # the warm server checks every second whether Snakemake is alive; allow for a loaded machine
    deadline = time.time() + 30
    while leftovers() and time.time() < deadline:
        time.sleep(0.5)
    assert not leftovers(), f"processes survived the kill: {leftovers()}"
    # Snakemake's directory lock survives a SIGKILL of the controller: --unlock (docs/reliability.md), then the same command
    assert subprocess.run(_command("--unlock"), cwd=work, capture_output=True, timeout=300).returncode == 0
    result = subprocess.run(_command(), cwd=work, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _metrics(work) == _metrics(uninterrupted)


def test_changes_outside_a_cells_spec_do_not_retrain_it(uninterrupted, tmp_path):
    changed = uninterrupted / "changed.yaml"
    changed.write_text(yaml.safe_dump({"tables": {"tolerance": 2.5}, "recipes": {"bam-original": {"base_lr": 0.01}}}))
    result = subprocess.run(_command("-n", "--configfile", "config/demo.yaml", "config/quick.yaml", "overlay.yaml", str(changed)),
                            cwd=uninterrupted, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_a_change_to_the_cells_recipe_retrains_it(uninterrupted):
    changed = uninterrupted / "changed_lr.yaml"
    changed.write_text(yaml.safe_dump({"recipes": {"svf-code": {"base_lr": 0.02}}}))
    result = subprocess.run(_command("-n", "--configfile", "config/demo.yaml", "config/quick.yaml", "overlay.yaml", str(changed)),
                            cwd=uninterrupted, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert "rule train:" in result.stdout and "params" in result.stdout.lower()


def test_killed_evaluation_leaves_no_partial_metrics_and_the_rerun_matches(uninterrupted, tmp_path):
    cell = uninterrupted / "results" / "demo" / "cells" / CELL
    out = tmp_path / "metrics.json"
    # the same evaluation as the rule, from its recorded shell command, writing elsewhere; killed at once
    command = _evaluate_command(uninterrupted, out, episodes=400)
    process = subprocess.Popen(command, cwd=uninterrupted, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    assert not list(tmp_path.glob(".metrics.json.*"))
    rerun = subprocess.run(_evaluate_command(uninterrupted, out, episodes=None), cwd=uninterrupted,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ours = {k: v for k, v in json.loads(out.read_text()).items() if k not in VOLATILE}
    theirs = _metrics(uninterrupted)
    assert ours["miou"] == theirs["miou"] and ours["class_iou"] == theirs["class_iou"]
    assert (cell / "metrics.json").exists()


def _evaluate_command(work: Path, out: Path, episodes: int | None) -> list[str]:
    """`svf evaluate` for the cell with the workflow's own spec (optionally with more episodes, to be slow)."""
    from cells import merged_config

    from svf.pipeline.cells import Cell
    from svf.pipeline.specs import cell_spec
    from svf.pipeline.cells import parse_cell_id

    quick = yaml.safe_load((ROOT / "config" / "quick.yaml").read_text())  # as the workflow ran: demo + quick + overlay
    spec = cell_spec(merged_config(quick, OVERLAY), Cell.from_mapping(parse_cell_id(CELL)))
    if episodes:
        spec["evaluation"]["episodes"] = episodes
    res = work / "resources" / "demo"
    return [sys.executable, "-m", "svf", "evaluate", "--spec", json.dumps(spec), "--dataset-root",
            str(res / "data" / "pascal"), "--splits", str(res / "splits" / "pascal"), "--weights",
            str(res / "weights" / "resnet50.pth"), "--model",
            str(work / "results" / "demo" / "cells" / CELL / "model.pt"), "--out", str(out), "--threads", "1"]
