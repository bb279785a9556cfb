"""The GPU check under pytest (marker ``gpu``): skipped without CUDA; `make gpu-check` runs it without pytest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("gpu_check.py")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU check needs one")
def test_gpu_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(out.read_text())["passed"]


@pytest.mark.slow
def test_the_check_runs_on_the_cpu_with_only_the_light_dependencies(tmp_path):
    """The same code at toy sizes on the CPU, with Snakemake, jsonschema, pycocotools and gdown made unimportable
    (the GPU machines have none of them)."""
    out = tmp_path / "gpu_check.json"
    blocker = ("import sys, runpy\n"
               "for name in ('snakemake', 'jsonschema', 'pycocotools', 'gdown'):\n"
               "    sys.modules[name] = None\n"
               f"sys.argv = ['gpu_check.py', '--cpu', '--out', {str(out)!r}]\n"
               f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert result.returncode == 0 and report["passed"], result.stdout[-3000:] + result.stderr[-3000:]
    assert report["cell"]["first"]["device"] == "cpu" and report["micro_batches"]["equal"]
    assert set(report["estimate"]) >= {"1shot_fp32", "5shot_bf16_channels_last", "1shot_bf16_cl_over_fp32_step"}


def test_without_cuda_the_check_says_so_and_passes(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "no CUDA device here" in result.stdout
