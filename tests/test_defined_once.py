"""Each idea is defined once (issue 24): the ignore label, the ImageNet statistics, the repository root, the file
names of cells and reports, the policy grammar, the stage names, the default seed, the atomic writer. Each test
fails when a second definition appears in svf/ (or the workflow)."""
from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

import svf
from svf.labels import IGNORE_LABEL
from svf.pipeline import paths

PACKAGE = Path(svf.__file__).parent
ROOT = PACKAGE.parent


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()



def _modules() -> dict[str, tuple[str, ast.AST]]:
    """``{relative path: (source, tree)}`` of every module of svf/."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        out[_relative(path)] = (source, ast.parse(source))
    return out


MODULES = _modules()


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string statements (docstrings and other bare strings): prose, not code."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _strings(tree: ast.AST):
    """Every string literal of the code (pieces of f-strings included), docstrings left out."""
    prose = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            yield node


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


# --- the ignore label ----------------------------------------------------------------------------------------------


def _bare_255(tree: ast.AST, source: str) -> list[int]:
    """Lines of every literal 255 (255 or 255.0; 0xFF is a byte) that is not a pixel maximum: a range bound of
    ``clip``/``uniform``/``integers`` or the pixel scale ``255.0 * x`` of the ImageNet statistics."""
    parents = _parents(tree)
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value == 255):
            continue
        if ast.get_source_segment(source, node).lower().startswith("0x"):
            continue
        parent = parents.get(id(node))
        call = parent.func if isinstance(parent, ast.Call) else None
        name = getattr(call, "attr", getattr(call, "id", None))
        pixel_range = name in {"clip", "uniform", "integers"} and node in parent.args
        pixel_scale = (isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Mult)
                       and isinstance(node.value, float))
        if not (pixel_range or pixel_scale):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_module_but_svf_labels_spells_the_ignore_label():
    offenders = {rel: lines for rel, (source, tree) in MODULES.items()
                 if rel != "svf/labels.py" and (lines := _bare_255(tree, source))}
    assert not offenders, f"use svf.labels.IGNORE_LABEL instead of 255 at {offenders}"
    example = ("x = 255\nif y != 255: pass\nf(ignore_index=255)\nb = 0xFF\nnp.full(s, 255)\nt[255] = 0\n"
               "np.clip(a, 0, 255)\nrng.integers(0, 255, 3)\nm = 255.0 * s\n")
    assert _bare_255(ast.parse(example), example) == [1, 2, 3, 5, 6]


def test_every_user_reads_the_one_constant():
    from svf.data import datasets, transforms
    from svf.engine.tasks import metrics
    from svf.models import common

    assert IGNORE_LABEL == 255
    assert datasets.IGNORE_LABEL is transforms.IGNORE_LABEL is metrics.IGNORE_LABEL is common.IGNORE_LABEL


# --- the ImageNet statistics ---------------------------------------------------------------------------------------


def test_the_imagenet_statistics_are_written_in_one_module():
    holders = sorted(rel for rel, (_, tree) in MODULES.items()
                     if any(isinstance(n, ast.Constant) and n.value in (0.485, 0.229) for n in ast.walk(tree)))
    assert holders == ["svf/data/transforms.py"]


def test_figure4_undoes_the_normalisation_with_the_same_statistics():
    import numpy as np

    from svf.data.transforms import MEAN, STD
    from svf.report import figure4

    assert np.array_equal(figure4._MEAN, np.array(MEAN)) and np.array_equal(figure4._STD, np.array(STD))


# --- the repository root -------------------------------------------------------------------------------------------


def test_the_repository_root_is_found_in_one_place():
    from svf.files import REPO_ROOT

    assert (REPO_ROOT / "workflow" / "schemas").is_dir() and (REPO_ROOT / "config").is_dir()
    holders = sorted(rel for rel, (source, _) in MODULES.items()
                     if any("parents[" in line.split("#")[0] for line in source.splitlines()))
    assert holders == ["svf/files.py"]


# --- file names ----------------------------------------------------------------------------------------------------


def _file_names() -> dict[str, str]:
    """``{file name: the module that defines it}``: the bare file names of svf/pipeline/paths.py (cells, reports,
    checkpoints, the paper's numbers) and of the prepared dataset (svf/data/datasets.py)."""
    from svf.data import datasets

    names = {}
    for value in vars(paths).values():
        for item in (value if isinstance(value, tuple) else (value,)):
            if isinstance(item, str) and re.fullmatch(r"[\w/]+\.\w+", item) and not item.startswith("<"):
                names[PurePosixPath(item).name] = "svf/pipeline/paths.py"
    names.update({datasets.DATASET_FILE: "svf/data/datasets.py", datasets.SPLITS_SUMMARY: "svf/data/datasets.py"})
    names["spec.json"] = "svf/pipeline/paths.py"  # none yet: a cell's spec travels in train_summary.json
    return names


def _names_a_file(text: str, name: str) -> bool:
    """The literal is a path that ends in ``name`` (a help text that mentions the file in a sentence is prose)."""
    return text == name or text.endswith("/" + name)


def test_cell_and_report_file_names_are_spelled_only_where_defined():
    names = _file_names()
    assert {"model.pt", "metrics.json", "train_log.csv", "singular_values.json", "last.pt", "summary.md",
            "study.csv", "paper_results.csv", "dataset.json", "estimate.csv"} <= set(names)
    offenders = []
    for rel, (_, tree) in MODULES.items():
        for node in _strings(tree):
            offenders += [f"{rel}:{node.lineno} {name}" for name, home in names.items()
                          if rel != home and _names_a_file(node.value, name)]
    workflow = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    for path in workflow:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            offenders += [f"{_relative(path)}:{number} {name}" for name in names
                          if re.search(rf"[\"'/]{re.escape(name)}[\"']", code)]
    assert not offenders, f"use the constants of svf/pipeline/paths.py: {offenders}"


# --- the policy grammar --------------------------------------------------------------------------------------------


def test_the_policy_pattern_is_the_grammar_without_its_group_names():
    from svf import policy_names

    assert policy_names.POLICY_PATTERN == re.sub(r"\(\?P<\w+>", "(?:", policy_names._GRAMMAR.pattern)
    for name in policy_names.PAPER_POLICIES:
        assert re.match(policy_names.POLICY_PATTERN, name) and policy_names._GRAMMAR.match(name)
    # every regular expression of a policy lies in that one statement
    regex_lines = set()
    for rel, (_, tree) in MODULES.items():
        for node in _strings(tree):
            if "bntrain" in node.value and "(?" in node.value:
                regex_lines.add((rel, node.lineno))
    source, tree = MODULES["svf/policy_names.py"]
    grammar = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "_GRAMMAR")
    assert {rel for rel, _ in regex_lines} == {"svf/policy_names.py"}
    assert all(grammar.lineno <= line <= grammar.end_lineno for _, line in regex_lines)


# --- the stage names -----------------------------------------------------------------------------------------------


def test_the_stage_names_are_built_only_in_svf_backbones_base():
    offenders = []
    stage = re.compile(r"layer[0-4]")
    for rel, (source, tree) in MODULES.items():
        if rel == "svf/backbones/base.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):  # f"layer{k}": the names composed again
                pieces = node.values
                offenders += [f"{rel}:{node.lineno}" for a, b in zip(pieces, pieces[1:])
                              if isinstance(a, ast.Constant) and a.value.endswith("layer")
                              and isinstance(b, ast.FormattedValue)]
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):  # the names enumerated again
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                named = [i for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)
                         and stage.fullmatch(i.value)]
                if len(named) > 1:
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"use svf.backbones.base.STAGES at {offenders}"


# --- the default seed ----------------------------------------------------------------------------------------------


def test_the_default_training_seed_is_written_once():
    # svf/engine/tasks/protocols.py: the published evaluation protocols' episode seeds, which no training seed changes
    allowed = {"svf/pipeline/cells.py", "svf/engine/tasks/protocols.py"}
    holders = sorted(rel for rel, (_, tree) in MODULES.items()
                     if any(isinstance(n, ast.Constant) and type(n.value) is int and n.value == 321
                            for n in ast.walk(tree)))
    assert [rel for rel in holders if rel not in allowed] == []
    readers = sorted(rel for rel, (source, _) in MODULES.items() if '.get("seeds")' in source)
    assert readers == ["svf/pipeline/tables.py"]
    smk = (ROOT / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8")
    assert "SEEDS = training_seeds(config)" in smk


def test_the_data_settings_defaults_are_written_once():
    """The COCO split and the EXIF handling have their default in svf/data/datasets.py: no parameter, dataclass
    field or argparse option spells "interleaved" or "apply" as its own default; the config schema's default is
    the same value."""
    import yaml

    from svf.data.datasets import DEFAULT_COCO_SPLIT, DEFAULT_EXIF_ORIENTATION

    spelled = []
    for rel, (_, tree) in MODULES.items():
        for node in ast.walk(tree):
            defaults = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                defaults = [node.value]
            elif isinstance(node, ast.keyword) and node.arg == "default":
                defaults = [node.value]
            spelled += [f"{rel}:{d.lineno}" for d in defaults
                        if isinstance(d, ast.Constant) and d.value in ("interleaved", "apply")]
    assert spelled == [], f"use svf.data.datasets.DEFAULT_COCO_SPLIT / DEFAULT_EXIF_ORIENTATION at {spelled}"
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    data = schema["properties"]["data"]["properties"]
    assert data["coco_split"]["default"] == DEFAULT_COCO_SPLIT
    assert data["exif_orientation"]["default"] == DEFAULT_EXIF_ORIENTATION


# --- the atomic writer ---------------------------------------------------------------------------------------------


def test_outputs_are_written_through_svf_files():
    """No module writes a file with Path.write_text/write_bytes but svf/files.py. Left out: the synthetic stand-in of
    the downloads (svf/synthetic/raw.py), complete only when rule synth touches its marker."""
    allowed = {"svf/files.py", "svf/synthetic/raw.py"}
    offenders = [f"{rel}:{node.lineno}" for rel, (_, tree) in MODULES.items()
                 if rel not in allowed
                 for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr in ("write_text", "write_bytes")
                 and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "files")]  # svf.files
    assert not offenders, f"use svf.files.write_text / atomic_write at {offenders}"


def test_dataset_json_is_written_atomically(tmp_path, monkeypatch):
    from svf.data import datasets

    calls = []
    real = datasets.write_text
    monkeypatch.setattr(datasets, "write_text", lambda path, text: calls.append(path) or real(path, text))
    path = datasets.write_dataset_json(tmp_path / "d", "pascal", source="synthetic")
    assert calls == [path] and datasets.open_dataset(tmp_path / "d").info["source"] == "synthetic"
