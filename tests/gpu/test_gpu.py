"""The GPU check: under pytest on CUDA (marker ``gpu``), its CPU path at toy sizes with the optional packages made
unimportable, its behaviour when the budget runs out, the determinism reset, and the config snapshot it reads
without PyYAML."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

SCRIPT = Path(__file__).with_name("gpu_check.py")
ROOT = SCRIPT.parents[2]
OPTIONAL = ("yaml", "tqdm", "torchvision", "jsonschema", "snakemake", "pycocotools", "gdown")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_without_optional_packages(out: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """gpu_check.py --cpu in a fresh interpreter where the optional packages cannot be imported."""
    blocker = ("import sys, runpy\n"
               f"for name in {OPTIONAL!r}:\n"
               "    sys.modules[name] = None\n"
               f"sys.argv = ['gpu_check.py', '--cpu', '--out', {str(out)!r}, *{list(args)!r}]\n"
               f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ""}, cwd=out.parent)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU check needs one")
def test_gpu_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(out.read_text())["passed"]


@pytest.mark.slow
def test_the_check_runs_on_the_cpu_with_only_the_required_packages(tmp_path):
    """Every check, toy sizes, on the CPU, with PyYAML, tqdm, torchvision, jsonschema, Snakemake, pycocotools and
    gdown unimportable: a complete JSON and the table."""
    out = tmp_path / "gpu_check.json"
    result = _run_without_optional_packages(out)
    report = json.loads(out.read_text())
    assert result.returncode == 0 and report["passed"], result.stdout[-3000:] + result.stderr[-3000:]
    assert all(report["optional"][name].startswith("missing") for name in OPTIONAL if name != "gdown")
    assert "snapshot" in report["optional"]["yaml"] and "stand-in" in report["optional"]["tqdm"]
    for name in ("device", "precision", "micro_batches", "heavy", "paper", "cell"):
        assert report[name]["status"] == "ok", (name, report[name])
    rows = report["heavy"]["rows"]
    assert len(rows) == 2 * 10 and not report["heavy"]["errors"]
    assert all(r["step_s"] > 0 and r["achieved_tflops"] > 0 and r["val_episode_s"] > 0 for r in rows)
    kinds = {r["kind"] for r in rows}
    assert {"coco/resnet50/bam/svf/5", "coco/vgg16/base-learner", "pascal/resnet50/baseline/svf/1"} <= kinds
    assert report["precision"]["svd_layers_writing_float32_under_bf16"] == []
    totals = report["paper"]["totals"]
    assert set(totals) == {"tf32", "bf16-cl"} and all(t["device_hours"] > 0 and t["cells"] == 4
                                                      for t in totals.values())
    assert report["cell"]["first"]["device"] == "cpu" and report["cell"]["deterministic_identical"]
    assert (tmp_path / "gpu_check_estimate" / "estimate.md").is_file()
    assert "  tf32: " in result.stdout and "coco/resnet50/bam/svf/5" in result.stdout


def test_a_budget_that_runs_out_still_leaves_a_valid_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = _run_without_optional_packages(out, "--budget-s", "12", timeout=600)
    report = json.loads(out.read_text())  # valid JSON: no NaN, every part written
    assert result.returncode == 1 and report["passed"] is False
    assert report["device"]["status"] == "ok" and report["device"]["matmul_tflops"]["tf32"] > 0
    later = [report[name] for name in ("heavy", "paper", "cell")]
    assert all(part["status"] in ("skipped", "timed out") and part["reason"] for part in later)
    assert "total_s" in report and report["failed_checks"]


def test_every_check_leaves_determinism_off(tmp_path):
    gpu_check = _module()
    from svf.engine.loop.device import configure_determinism

    def deterministic_then_failing():
        configure_determinism(True)
        raise RuntimeError("boom")

    report = gpu_check.Report(tmp_path / "r.json", {})
    gpu_check.run_check(report, "x", deterministic_then_failing, gpu_check.Budget(60), 0)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    saved = json.loads((tmp_path / "r.json").read_text())["x"]
    assert saved["status"] == "error" and "boom" in saved["error"]


def test_a_check_past_the_budget_is_stopped_and_keeps_what_it_wrote(tmp_path):
    gpu_check = _module()
    report = gpu_check.Report(tmp_path / "r.json", {})

    def slow():
        report.part("x", {"status": "running", "rows": [1, 2]})
        time.sleep(30)
        return {}

    started = time.perf_counter()
    gpu_check.run_check(report, "x", slow, gpu_check.Budget(1.0), 0)
    assert time.perf_counter() - started < 10
    saved = json.loads((tmp_path / "r.json").read_text())["x"]
    assert saved["status"] == "timed out" and "budget" in saved["reason"] and saved["rows"] == [1, 2]


def test_heavy_kinds_past_the_kept_budget_are_listed_not_timed(tmp_path):
    gpu_check = _module()
    report = gpu_check.Report(tmp_path / "r.json", {})
    got = gpu_check.check_heavy(gpu_check.Configs(), torch.device("cpu"), True, report, None, gpu_check.Budget(5), 60)
    assert len(got["not_timed"]) == 2 * len(gpu_check.HEAVY) and not got["errors"]
    assert all("kept for the rest" in r["skipped"] for r in got["rows"])


def test_the_config_snapshot_matches_the_config_files():
    """The GPU check reads this snapshot where PyYAML is missing; refresh it with
    `python tests/gpu/gpu_check.py --write-config-snapshot` after changing a config file."""
    files = json.loads((SCRIPT.with_name("config_snapshot.json")).read_text())["files"]
    for name, entry in files.items():
        assert entry["document"] == yaml.safe_load((ROOT / name).read_text()), (
            f"{name} changed: run `python tests/gpu/gpu_check.py --write-config-snapshot`")


def test_without_cuda_the_check_says_so_and_passes(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "no CUDA device here" in result.stdout
