"""README.md and docs/*.md name only things that exist: repository paths, `svf.module.name` objects, test functions
(`tests/x.py::test_y`) and the targets of relative links (with their #anchors). Each test lists every failure at
once, so a module move shows all the stale sentences in one run."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

# A repository path: one of these roots, not glued to a longer path (so `results/.../tests/x` or `/tmp/config/y` are
# not taken); root files by name. Output folders (results/, figures/, resources/, logs/, benchmarks/) are not roots.
PATH = re.compile(r"(?<![\w./<>{}-])((?:svf|config|workflow|tests|docs|profiles|\.ci)/[\w./*<>{}…-]*"
                  r"|Makefile|Snakefile|pyproject\.toml|environment\.yml|requirements\.lock)(::\w+)?")
# `svf.module.name`: dotted, starting with svf., not part of a path or a longer name (their `model/svf.py`)
DOTTED = re.compile(r"(?<![\w./-])svf(?:\.\w+)+")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FILE_SUFFIXES = (".py", ".md", ".yaml", ".json", ".csv", ".txt", ".pt", ".pth", ".smk", ".sh", ".tsv")


def _texts():
    return [(doc, doc.read_text(encoding="utf-8")) for doc in DOCS]


def _where(doc: Path, text: str, start: int) -> str:
    return f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, start) + 1}"


def _named_paths():
    for doc, text in _texts():
        for match in PATH.finditer(text):
            path = match.group(1).rstrip(".,:;")
            if any(c in path for c in "*<>{}…") or "..." in path:
                continue  # a pattern or a placeholder, not one file
            yield _where(doc, text, match.start()), path, match.group(2)


def test_every_named_repository_path_exists():
    missing, named = [], list(_named_paths())
    assert len(named) > 100, f"only {len(named)} paths found in the docs: is the pattern still right?"
    for where, path, test_name in named:
        target = ROOT / path
        if not target.exists():
            missing.append(f"{where}: {path}")
        elif test_name and not re.search(rf"^\s*def {test_name[2:]}\(", target.read_text(), re.M):
            missing.append(f"{where}: {path}{test_name} (no such test function)")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def _resolve(dotted: str) -> str | None:
    """None when `dotted` names a module or an object in one; else what failed."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name and ".".join(parts[:cut]).startswith(error.name) and cut > 1:
                continue  # this prefix is not a module: try a shorter one
            return f"cannot import {'.'.join(parts[:cut])}: {error}"
        for attr in parts[cut:]:
            fields = getattr(obj, "__dataclass_fields__", {})
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
            elif attr in fields:
                obj = fields[attr]
            else:
                return f"{'.'.join(parts[:cut])} has no {'.'.join(parts[cut:])}"
        return None
    return "no module"


def test_every_named_svf_module_and_object_resolves():
    failures, checked = [], set()
    for doc, text in _texts():
        for match in DOTTED.finditer(text):
            name = match.group(0).rstrip(".")
            if name.endswith(FILE_SUFFIXES) or name == "svf":
                continue
            checked.add(name)
            problem = _resolve(name)
            if problem:
                failures.append(f"{_where(doc, text, match.start())}: {name}: {problem}")
    assert len(checked) > 10, f"only {len(checked)} svf names found in the docs: is the pattern still right?"
    assert not failures, "svf names in the docs that do not resolve:\n" + "\n".join(failures)


def _anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_resolves_with_its_anchor():
    broken = []
    for doc, text in _texts():
        for match in LINK.finditer(text):
            target = match.group(1)
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{_where(doc, text, match.start())}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{_where(doc, text, match.start())}: {target} (no such heading)")
    assert not broken, "links in the docs that do not resolve:\n" + "\n".join(broken)


def test_the_readme_is_read_in_ten_minutes():
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/ (limit {README_MAX_LINES})"
