"""The variance pilot's blind summary (svf/report/pilot.py) on runs built so that every answer is known."""
import json
import math

import pytest

from svf.pipeline.cells import parse_cell_id
from svf.report import pilot


def write_runs(root, value, floor=lambda row, fold, seed: 15.0):
    for row in pilot.ROWS:
        for fold in pilot.FOLDS:
            for seed in pilot.SEEDS:
                path = pilot.metrics_path(root, row, fold, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"miou": value(row, fold, seed),
                                            "all_foreground_miou": floor(row, fold, seed)}))


def test_spread_is_the_pooled_within_fold_sd_of_the_paired_differences(tmp_path):
    # svf = frozen + fold effect + e, full = frozen + 2e, e = +-1 within each fold: fold effects must not count
    sign = {s: (-1) ** i for i, s in enumerate(pilot.SEEDS)}
    shift = {"frozen": 0, "svf": 1, "full": 2}
    write_runs(tmp_path, lambda row, fold, seed: 40.0 + (3.0 * fold if row == "svf" else 0.0)
               + shift[row] * sign[seed],
               floor=lambda row, fold, seed: 50.0 if (row, fold, seed) == ("full", 2, 903) else 15.0)
    got = pilot.spread(pilot.read_runs(tmp_path))
    one = math.sqrt(16 / 12)  # 16 deviations of +-1 on 16 - 4 degrees of freedom
    assert got["sd svf - frozen"] == pytest.approx(one)
    assert got["sd full - frozen"] == pytest.approx(2 * one)
    assert got["sd svf - full"] == pytest.approx(one)
    assert got["sd rms"] == pytest.approx(math.sqrt((1 + 4 + 1) / 3) * one)
    assert got["sd max"] == pytest.approx(2 * one)
    assert (got["runs"], got["failed"]) == (48, 1)
    assert got["lowest row mean"] == pytest.approx(40.0)


def test_summary_is_blind_and_targets_match_the_cells_read(tmp_path, capsys):
    write_runs(tmp_path / "a", lambda row, fold, seed: 30.0 + seed % 7 + (5.0 if row == "svf" else 0.0))
    assert pilot.main(["summary", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "sd rms" in printed and "mean svf" not in printed and "estimate" not in printed
    assert set(pilot.summary([tmp_path / "a"]).columns) == {
        "sd svf - frozen", "sd full - frozen", "sd svf - full", "sd rms", "sd max", "runs", "failed",
        "lowest row mean", "off plateau by epoch 10"}
    assert len(pilot.targets(tmp_path / "a")) == len(pilot.read_runs(tmp_path / "a")) == 48


def test_targets_are_the_workflows_cells_of_the_r50_baseline_dagger():
    first = pilot.targets("results/pilot/poly-best")[0].split("/")
    assert first[:4] == ["results", "pilot", "poly-best", "cells"]
    assert parse_cell_id("/".join(first[4:-1])) == {
        "dataset": "pascal", "backbone": "resnet50", "method": "baseline", "setting": "dagger", "policy": "frozen",
        "recipe": "svf-code", "shot": 1, "fold": 0, "seed": 901}


def test_the_collapse_pilot_runs_the_primary_rows_and_counts_the_runs_off_the_plateau_by_epoch_10(tmp_path, capsys):
    collapse = pilot.PILOTS["collapse"]
    assert set(collapse.seeds).isdisjoint(pilot.SEEDS) and len(collapse.comparisons) == 5
    assert len(pilot.targets(tmp_path, collapse)) == 5 * 4 * 4
    for row in collapse.rows:
        for fold in pilot.FOLDS:
            for seed in collapse.seeds:
                path = pilot.metrics_path(tmp_path, row, fold, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"miou": 30.0 + seed % 5, "all_foreground_miou": 15.0}))
                # seed 905 leaves the plateau at epoch 15, the others at epoch 10 (a 0.0 at 5 is the plateau)
                late = seed == 905
                pilot.metrics_path(tmp_path, row, fold, seed, "train_log.csv").write_text(
                    "epoch,step,loss,lr_head,lr_backbone,val_miou,time_s\n"
                    "5,80,0.6,0.01,0.001,0.0,1\n"
                    f"10,160,0.5,0.01,0.001,{0.0 if late else 12.5},1\n"
                    "15,240,0.4,0.01,0.001,20.0,1\n")
    got = pilot.spread(pilot.read_runs(tmp_path, collapse), collapse)
    assert got["runs"] == 80 and got["off plateau by epoch 10"] == pytest.approx(0.75)
    assert {"sd svf-U - svf", "sd svf-V - svf"} <= set(got) and got["sd rms"] == pytest.approx(0.0)
    assert pilot.main(["summary", str(tmp_path), "--pilot", "collapse"]) == 0
    assert "off plateau by epoch 10" in capsys.readouterr().out
    assert math.isnan(pilot.off_plateau(tmp_path / "missing.csv"))
