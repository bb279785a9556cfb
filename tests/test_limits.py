"""Size limits of svf/ (issue 24): no module over 400 lines, no function over 60 lines, so each can be read whole."""
from __future__ import annotations

import ast
from pathlib import Path

import svf

PACKAGE = Path(svf.__file__).parent
MODULE_LINES, FUNCTION_LINES = 400, 60



def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")



def test_no_module_over_400_lines():
    long = {str(path.relative_to(PACKAGE)): len(source.splitlines()) for path, source in _modules()
            if len(source.splitlines()) > MODULE_LINES}
    assert not long, f"split these modules (over {MODULE_LINES} lines): {long}"


def test_no_function_over_60_lines():
    long = {}
    for path, source in _modules():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - start + 1
                if lines > FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}::{node.name}"] = lines
    assert not long, f"split these functions (over {FUNCTION_LINES} lines): {long}"
