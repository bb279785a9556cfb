"""The ignore label is defined once (svf/labels.py): no other module assigns, compares with or passes a bare 255."""
from __future__ import annotations

import ast
from pathlib import Path

import svf
from svf.labels import IGNORE_LABEL

PACKAGE = Path(svf.__file__).parent


def _bare_255(tree: ast.AST, source: str) -> list[int]:
    """Lines where a literal 255 (not 0xFF, a byte) is assigned, compared with, or passed as a keyword."""
    lines = []
    for node in ast.walk(tree):
        values = []
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            values = [node.value]
        elif isinstance(node, ast.Compare):
            values = [node.left, *node.comparators]
        elif isinstance(node, ast.keyword):
            values = [node.value]
        lines += [v.lineno for v in values if isinstance(v, ast.Constant) and v.value == 255
                  and ast.get_source_segment(source, v) == "255"]
    return lines


def test_no_module_but_svf_labels_spells_the_ignore_label():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "labels.py" and path.parent == PACKAGE:
            continue
        source = path.read_text()
        lines = _bare_255(ast.parse(source), source)
        if lines:
            offenders[str(path.relative_to(PACKAGE))] = lines
    assert not offenders, f"use svf.labels.IGNORE_LABEL instead of 255 at {offenders}"
    example = "x = 255\nif y != 255: pass\nf(ignore_index=255)\nb = 0xFF"
    assert _bare_255(ast.parse(example), example) == [1, 2, 3]


def test_every_user_reads_the_one_constant():
    from svf.data import datasets, transforms
    from svf.engine.tasks import metrics
    from svf.models import common

    assert IGNORE_LABEL == 255
    assert datasets.IGNORE_LABEL is transforms.IGNORE_LABEL is metrics.IGNORE_LABEL is common.IGNORE_LABEL
