"""pyproject.toml (ranges), requirements.lock (exact versions, hashes) and environment.yml (the lock's versions) agree,
the environment holds exactly the locked versions, and the Makefile finds a supported Python."""
from __future__ import annotations

import os
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


def _pyproject(extras=("pipeline",)) -> dict[str, str]:
    """Name -> specifier of the library's dependencies and the named extras (a name in both: both specifiers)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps: dict[str, str] = {}
    for req in [*data["project"]["dependencies"], *(r for e in extras
                                                     for r in data["project"]["optional-dependencies"][e])]:
        name, spec = _split(req)
        deps[name] = ",".join(s for s in (deps.get(name), spec) if s)
    return deps


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


def test_the_library_needs_torch_and_numpy_only_and_the_lock_pins_the_pipeline():
    assert set(_pyproject(extras=())) == {"torch", "numpy"}
    assert _pyproject()["snakemake"] == ">=9.19,<10"  # the pipeline is an extra
    pins = _lock_pins("3.11")
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")  # exact for the pipeline, in the lock


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


def test_the_lock_was_made_with_the_pipeline_extra():
    makefile = (ROOT / "Makefile").read_text()
    assert "--extra pipeline --extra test --extra reports" in makefile
    assert "snakemake-executor-plugin-slurm==" in LOCK.read_text()


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


# --- the library alone: `pip install .` without the pipeline extra ------------------------------------------------

def _distribution_closure(names: list[str]) -> dict:
    """The installed distributions ``names`` need, recursively, with the extras each requirement asks for (torch
    asks for cuda-toolkit[cublas, ...], which then needs the nvidia-* libraries)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    found, done, todo = {}, set(), [(n, frozenset()) for n in names]
    while todo:
        name, extras = todo.pop()
        name = name.lower().replace("_", "-")
        if (name, extras) in done:
            continue
        done.add((name, extras))
        try:
            found[name] = dist = distribution(name)
        except PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((req.name, frozenset(req.extras)))
    return found


def _link_distributions(dists: dict, into) -> None:
    """Symlink the top-level files and directories of the distributions (and their metadata) into ``into``."""
    into.mkdir()
    for dist in dists.values():
        for file in dist.files or []:
            top = file.parts[0]
            source = dist.locate_file(top)
            if top not in ("..", "__pycache__") and source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)


@pytest.mark.slow
def test_pip_install_without_the_extra_gives_the_library_with_torch_alone(tmp_path):
    """A fresh venv sees torch and numpy (and what they need) from this environment, nothing else; `pip install .`
    must then install svf alone (no Snakemake, no pandas), and the README's MLP example runs."""
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    closure = _distribution_closure(["torch", "numpy"])
    assert "snakemake" not in closure and "pandas" not in closure
    _link_distributions(closure, tmp_path / "torch-only")
    (Path(site) / "torch-only.pth").write_text(str(tmp_path / "torch-only") + "\n")
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    import shutil

    shutil.copytree(ROOT / "svf", source / "svf", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run([str(python), "-m", "pip", "install", str(source)], capture_output=True, text=True,
                             timeout=900, env=env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    installed = re.search(r"^Successfully installed (.*)$", install.stdout, re.M)
    names = {re.sub(r"-[0-9][^-]*$", "", item).lower() for item in installed[1].split()} if installed else set()
    # svf, and at most a newer copy of one of torch's own requirements (the venv's old setuptools): nothing of the
    # pipeline extra
    assert "svf" in names and names - {"svf"} <= set(closure), install.stdout[-2000:]
    pipeline = {_split(r)[0] for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["pipeline"]}
    assert not names & pipeline
    readme = (ROOT / "README.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "# a model of Linear layers" in b)
    script = ("import importlib.util, sys\n"
              "assert importlib.util.find_spec('snakemake') is None and importlib.util.find_spec('pandas') is None\n"
              "import svf.decompose, svf.policy\n"
              "assert svf.policy.__file__.startswith(sys.prefix), svf.policy.__file__\n" + example)
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "['0.vector_S', '2.vector_S', '4.weight', '4.bias']" in run.stdout
