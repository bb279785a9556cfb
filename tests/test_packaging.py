"""pyproject.toml and environment.yml must pin the same runtime dependencies."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req)
    assert m, req
    name = re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")
    spec = m.group(2).replace(" ", "")
    if spec.startswith("=") and not spec.startswith("=="):  # conda's single '=' means the same pin
        spec = "=" + spec
    return name, spec


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(_split(r) for r in data["project"]["dependencies"])


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs: dict[str, str] = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item in ("pip",) or item.startswith("python="):
                continue
            name, spec = _split(item)
            reqs[name] = spec
    return reqs


def test_environment_pins_equal_pyproject():
    assert _environment() == _pyproject()


def test_torch_pins_are_exact():
    deps = _pyproject()
    assert deps["torch"] == "==2.14.1"
    assert deps["torchvision"] == "==0.29.1"
    assert deps["snakemake"] == ">=9.19,<10"


def test_console_script_declared():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["scripts"]["svf"] == "svf.cli:main"
