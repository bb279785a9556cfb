"""pyproject.toml (ranges), requirements.lock (exact versions, hashes) and environment.yml (the lock's versions) agree,
the environment holds exactly the locked versions, and the Makefile finds a supported Python."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
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


def test_environment_lists_pyprojects_dependencies():
    assert set(_environment()) == set(_pyproject())


def test_torch_pins_are_exact():
    deps = _pyproject()
    assert deps["torch"] == "==2.14.1"
    assert deps["torchvision"] == "==0.29.1"
    assert deps["snakemake"] == ">=9.19,<10"


def test_console_script_declared():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["scripts"]["svf"] == "svf.__main__:main"


# --- the lock: exact versions of everything, the same two commands on any supported Python ------------------------

LOCK = ROOT / "requirements.lock"
NOT_IN_FREEZE = {"pip", "setuptools", "wheel", "uv"}  # pip freeze leaves these out; uv comes with `make lock`


def _lock_pins(python: str | None = None) -> dict[str, str]:
    """Name -> version of every lock entry whose environment marker holds for this interpreter (or for Python
    ``python``, e.g. "3.11")."""
    from packaging.markers import Marker

    environment = {"python_version": python, "python_full_version": f"{python}.0"} if python else None
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate(environment)):
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_the_lock_pins_every_dependency_within_pyprojects_ranges():
    from packaging.specifiers import SpecifierSet

    pins = _lock_pins()
    for name, spec in _pyproject().items():
        assert name in pins, f"{name} is not in requirements.lock (run `make lock`)"
        assert SpecifierSet(spec).contains(pins[name]), (name, spec, pins[name])
    assert len(pins) > 80 and "hash=sha256:" in LOCK.read_text()


def test_the_environment_has_exactly_the_locked_versions():
    import subprocess
    import sys

    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    installed = {}
    for line in freeze.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            installed[name.lower().replace("_", "-")] = version
    locked = {k: v for k, v in _lock_pins().items() if k not in NOT_IN_FREEZE}
    installed = {k: v for k, v in installed.items() if k not in NOT_IN_FREEZE}
    assert installed == locked, {k: (installed.get(k), locked.get(k))
                                 for k in set(installed) | set(locked) if installed.get(k) != locked.get(k)}


def test_environment_yml_pins_the_locked_versions():
    python = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"][0]
    assert python == "python=3.11"  # the lock's versions for the environment's Python, whichever runs the test
    pins = _lock_pins(python.split("=")[1])
    for name, spec in _environment().items():
        assert spec == f"=={pins[name]}", (name, spec, pins[name])


def _make_python(tmp_path, programs):
    """The interpreter the Makefile picks with only ``programs`` ({name: script}) on the PATH."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for name, script in programs.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    # (a recipe of $(info) only: expanded after the Makefile is read, and runs no program)
    return subprocess.run(["/usr/bin/make", "-s", "-f", str(ROOT / "Makefile"), "--eval",
                           "which-python: ; $(info picked=$(PYTHON))", "which-python"], cwd=tmp_path,
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True)


def test_the_makefile_finds_a_supported_python_and_says_which_it_accepts(tmp_path):
    import shutil
    import sys

    if not shutil.which("make"):
        pytest.skip("no make")
    real = f"#!/bin/sh\nexec {sys.executable} \"$@\"\n"
    old = "#!/bin/sh\necho 'Python 3.9.0'; exit 1\n"  # too old: its version check fails
    assert _make_python(tmp_path / "a", {"python3.11": old, "python3.12": real}).stdout.strip() == "picked=python3.12"
    assert _make_python(tmp_path / "b", {"python3.11": real, "python3.12": real}).stdout.strip() == "picked=python3.11"
    (tmp_path / "c").mkdir()
    import subprocess

    none = subprocess.run(["/usr/bin/make", "-f", str(ROOT / "Makefile"), ".venv/bin/python"], cwd=tmp_path / "c",
                          env={"PATH": str(tmp_path / "c")}, capture_output=True, text=True)
    assert none.returncode != 0 and "no Python 3.11-3.13 found" in none.stderr
