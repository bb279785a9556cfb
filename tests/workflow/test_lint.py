"""The workflow's style: Snakemake's linter and snakefmt pass, and the rules take every path from svf.pipeline."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_dag import ROOT, snakemake

RULES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


@pytest.mark.parametrize("configs", [(), ("config/demo.yaml", "config/study.yaml", "config/study-cpu.yaml")],
                         ids=["paper", "study"])
def test_snakemake_lint_is_clean(configs):
    result = snakemake("--lint", *(("--configfile", *configs) if configs else ()))
    assert result.returncode == 0 and "good condition" in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_leaves_the_workflow_unchanged():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    result = subprocess.run([str(snakefmt), "--check", "Snakefile", "workflow/"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_spell_out_no_path_of_their_own():
    # outputs, inputs and parameters come from svf/pipeline/paths.py; only logs and benchmarks nobody else reads
    # (one per rule) are written here
    for path in [ROOT / "Snakefile", *RULES]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert "Path(" not in code, f"{path.name}:{number}: {line.strip()}"
            if re.search(r'"<(results|resources|figures)>', code):
                pytest.fail(f"{path.name}:{number} spells out a path: {line.strip()}")
