"""`svf bench svf-step` with tiny settings: the JSON has every variant, ratio and FLOP count (no timing assertions)."""
from __future__ import annotations

import json

import pytest

from svf.engine.tools.step_bench import RATIOS, TARGETS, run_svf_step
from svf.cli import main

VARIANTS = {"frozen_train", "full_train", "svf_train", "svf_train_three_step", "plain_eval", "merged_eval",
            "svf_eval"}


def test_cli_writes_benchmark_json(tmp_path, capsys):
    out = tmp_path / "bench" / "svf_step.json"
    code = main(["bench", "svf-step", "--out", str(out), "--size", "32", "--repeats", "2", "--threads", "1",
                 "--width", "0.125", "--depths", "1", "1", "1", "1"])
    assert code == 0 and "svf_over_full" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["config"]["size"] == 32 and result["config"]["threads"] == 1
    for key in ("median_s", "median_cpu_s", "times_s", "gflops"):
        assert set(result[key]) == VARIANTS, key
    assert all(v > 0 for v in result["median_s"].values())
    assert all(len(v) == 2 and min(v) > 0 for v in result["times_s"].values())
    for key in ("ratios", "cpu_ratios", "paired_ratios"):
        assert set(result[key]) == set(RATIOS) and all(v > 0 for v in result[key].values()), key
    assert set(result["meets_target"]) == set(TARGETS)
    flops = result["gflops"]
    # structural facts that hold at any size: SVF does less arithmetic than a full fine-tune, more than frozen
    assert flops["frozen_train"] < flops["svf_train"] < flops["full_train"]
    assert flops["merged_eval"] == pytest.approx(flops["plain_eval"])
    trainable = result["trainable_params"]
    assert trainable["frozen_train"] < trainable["svf_train"] < trainable["full_train"]


def test_vgg_and_bad_arguments():
    result = run_svf_step(size=16, repeats=1, warmup=0, threads=1, backbone="vgg16", width=0.0625, count_flops=False,
                          log=None)
    assert "gflops" not in result and set(result["median_s"]) == VARIANTS
    with pytest.raises(ValueError, match="repeats >= 1"):
        run_svf_step(repeats=0)
