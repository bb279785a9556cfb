"""The engine's rooms import downwards only: loop/ knows neither tasks/ nor tools/, tasks/ does not know tools/ (and
the pipeline's specs are light enough for the Snakefile)."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "svf" / "engine"
ABOVE = {"loop": ("tasks", "tools", "commands"), "tasks": ("tools", "commands"), "tools": ("commands",)}


def _imported(path: Path) -> set[str]:
    """The engine rooms (and commands) a module imports from, module level and function level alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level == 1:  # from .x (same room) or from . import x
                continue
            if node.level == 2 or name.startswith("svf.engine."):
                found.add(name.removeprefix("svf.engine.").split(".")[0])
    return found


def test_each_room_imports_only_the_rooms_below_it():
    for room, forbidden in ABOVE.items():
        for path in sorted((ENGINE / room).glob("*.py")):
            wrong = _imported(path) & set(forbidden)
            assert not wrong, f"{path.relative_to(ENGINE)} imports {sorted(wrong)}"
