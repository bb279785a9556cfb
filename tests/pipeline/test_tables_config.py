"""config/tables.yaml: cell counts, shared cells, schema errors that name the fault, the light import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from svf.pipeline.cells import cell_id, parse_cell_id
from svf.pipeline.tables import TablesConfigError, base_learners_of, cells_of, load_tables, table_entries
from fakes import ROOT, SCHEMA, TABLES_YAML


@pytest.fixture(scope="module")
def tables():
    return load_tables(TABLES_YAML, schema=SCHEMA)


def _write(tmp_path: Path, doc) -> Path:
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def _raw():
    return yaml.safe_load(TABLES_YAML.read_text())


def test_paper_cell_counts(tables):
    assert len(cells_of(tables)) == 316
    assert len(cells_of(tables, ["table1"])) == 144
    assert len(cells_of(tables, ["table2"])) == 104
    assert len(cells_of(tables, ["table4"])) == 16
    ablations = cells_of(tables, ["table4", "table5", "table6", "table7", "table8"])
    new = {cell_id(c) for c in ablations} - {cell_id(c) for c in cells_of(tables, ["table1"])}
    assert len(new) == 68


def test_tables_are_1_2_4_to_8_without_table3(tables):
    assert list(tables["tables"]) == ["table1", "table2", "table4", "table5", "table6", "table7", "table8"]


def test_base_learners(tables):
    learners = base_learners_of(cells_of(tables))
    assert len(learners) == 16 and len(set(learners)) == 16
    assert {(d, b) for d, b, _ in learners} == {(d, b) for d in ("pascal", "coco") for b in ("resnet50", "vgg16")}
    assert base_learners_of(cells_of(tables, ["table4"])) == []


def test_ablation_reference_rows_are_table1_cells(tables):
    t1 = {cell_id(c) for c in cells_of(tables, ["table1"], row_ids=["resnet50-baseline-dagger",
                                                                     "resnet50-baseline-dagger-svf"], shots=[1])}
    for name in ("table4", "table5", "table6"):
        assert {cell_id(c) for c in cells_of(tables, [name], row_ids=["frozen", "svf"])} == t1
    assert {cell_id(c) for c in cells_of(tables, ["table7", "table8"], row_ids=["svf"])} < t1


def test_table2_pfenet_paper_row_uses_pfenets_recipe(tables):
    rows = {r["id"]: r for r in tables["tables"]["table2"]["rows"]}
    orig = rows["vgg16-pfenet-original-recipe"]
    assert (orig["setting"], orig["policy"], orig["recipe"]) == ("original", "frozen-bntrain", "pfenet-original")
    assert rows["vgg16-pfenet-dagger-svf"]["delta_to"] == "vgg16-pfenet-dagger"


def test_cells_have_all_parameters_and_ids_round_trip(tables):
    cells = cells_of(tables)
    keys = {"dataset", "backbone", "method", "setting", "policy", "recipe", "shot", "fold", "seed"}
    assert all(set(c) == keys for c in cells)
    assert cell_id(cells[0]) == "pascal/vgg16/baseline/dagger/frozen/svf-code/1shot/fold0/seed321"
    assert all(parse_cell_id(cell_id(c)) == c for c in cells)
    with pytest.raises(ValueError, match="not a cell id"):
        parse_cell_id("pascal/vgg16/1shot/fold0")
    with pytest.raises(ValueError, match="not a cell id"):
        parse_cell_id("pascal/vgg16/baseline/dagger/frozen/svf-code/1shot/fold0/seedX")


def test_restrictions_and_order(tables):
    cells = cells_of(tables, ["table4"], folds=[0], shots=[1])
    assert [c["policy"] for c in cells] == ["frozen", "bn", "svf-bn", "svf"]
    entries = table_entries(tables["tables"]["table1"], shots=[5], folds=[3])
    assert len(entries) == 18 and all(cell["shot"] == 5 and cell["fold"] == 3 for _, _, _, cell in entries)
    with pytest.raises(KeyError, match="table9"):
        cells_of(tables, ["table9"])
    with pytest.raises(KeyError, match="no-such-row"):
        cells_of(tables, ["table4"], row_ids=["no-such-row"])


@pytest.mark.parametrize("table, index, spoil, message", [
    ("table4", 1, lambda row: row.update(polcy=row.pop("policy")),
     r"tables/table4/rows/1: unknown key 'polcy'; did you mean 'policy'"),
    ("table1", 0, lambda row: row.update(backbone="resnet101"),
     r"tables/table1/rows/0/backbone: 'resnet101' is not one of"),
], ids=["typo-key", "bad-enum-value"])
def test_a_bad_row_key_or_value_is_named(tmp_path, table, index, spoil, message):
    doc = _raw()
    spoil(doc["tables"][table]["rows"][index])
    with pytest.raises(TablesConfigError, match=message):
        load_tables(_write(tmp_path, doc), schema=SCHEMA)


def test_bad_policy_and_columns_are_named(tmp_path):
    doc = _raw()
    doc["tables"]["table5"]["rows"][2]["policy"] = "part-l432"
    doc["tables"]["table5"]["columns"] = "folds"
    with pytest.raises(TablesConfigError, match=r"tables/table5/columns: 'folds' is not one of folds\+mean, mean"):
        load_tables(_write(tmp_path, doc), schema=SCHEMA)
    doc["tables"]["table5"]["columns"] = "mean"
    with pytest.raises(TablesConfigError) as err:
        load_tables(_write(tmp_path, doc), schema=SCHEMA)
    message = str(err.value)  # the valid forms and the nearest name, not a regular expression
    assert "tables/table5/rows/2 (id 'part-l234')/policy: unknown policy 'part-l432'" in message
    assert "did you mean 'part-l4'?" in message and "part[-l<digits>][-3x3|-1x1]" in message and "(?" not in message
    doc["tables"]["table5"]["rows"][2]["policy"] = "svf-l234-S"
    with pytest.raises(TablesConfigError, match=r"write the policy 'svf-l234-S' as 'svf'"):
        load_tables(_write(tmp_path, doc), schema=SCHEMA)


def test_semantic_errors_name_row(tmp_path):
    doc = _raw()
    doc["tables"]["table8"]["rows"][1]["id"] = "svf-l4"
    with pytest.raises(TablesConfigError, match="duplicate row id 'svf-l4' in table table8"):
        load_tables(_write(tmp_path, doc), schema=SCHEMA)
    doc = _raw()
    doc["tables"]["table5"]["rows"][1]["delta_to"] = "frozn"
    with pytest.raises(TablesConfigError, match=r"tables/table5/rows/1/delta_to: unknown row id 'frozn'"):
        load_tables(_write(tmp_path, doc), schema=SCHEMA)
    doc = _raw()
    del doc["tables"]["table4"]["defaults"]["method"]
    with pytest.raises(TablesConfigError, match=r"tables/table4/rows/0 \(id 'frozen'\): missing cell parameter"):
        load_tables(_write(tmp_path, doc), schema=SCHEMA)


def test_policies_and_recipes_are_checked_against_code_and_config_not_listed_in_the_schema():
    from svf import policy_names

    schema = yaml.safe_load(SCHEMA.read_text())
    assert "pattern" not in schema["$defs"]["policy"] and "enum" not in schema["$defs"]["recipe"]
    rows = [r for t in _raw()["tables"].values() for r in t["rows"]]
    assert {r["policy"] for r in rows if "policy" in r} <= set(policy_names.PAPER_POLICIES)


def test_import_is_light():
    # the Snakefile imports the whole pipeline layer while it builds the DAG
    code = ("import sys, svf.pipeline.tables as t, svf.pipeline.specs, svf.pipeline.paths, svf.pipeline.cells; "
            "t.load_tables(%r); "
            "bad = [m for m in ('pandas', 'torch', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code % str(TABLES_YAML)], check=True, cwd=ROOT)


def test_primary_seeds_as_a_list_or_per_row(tables):
    from svf.pipeline.tables import primary_seed_cells, primary_seeds_by_row

    base = {"tables": {"folds": [0], "shots": [1]},
            "study": {"tables": ["table7"], "primary": ["svf-U vs svf", "svf-V vs svf"]}}
    as_list = {**base, "study": {**base["study"], "primary_seeds": [5, 6]}}
    assert primary_seeds_by_row(as_list) == {"svf": [5, 6], "svf-U": [5, 6], "svf-V": [5, 6]}
    per_row = {**base, "study": {**base["study"], "primary_seeds": {"svf": [5, 6, 7], "svf-U": [5], "svf-V": []}}}
    runs = {(c["policy"], c["seed"]) for c in primary_seed_cells(per_row, tables)}
    assert runs == {("svf", 5), ("svf", 6), ("svf", 7), ("svf-U", 5)}
    stray = {**base, "study": {**base["study"], "primary_seeds": {"frozen": [5]}}}
    with pytest.raises(ValueError, match=r"names \['frozen'\], which no primary claim compares"):
        primary_seeds_by_row(stray)
