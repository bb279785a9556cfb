"""The cell: its id format, the parser, the wildcard pattern and the light name lists beside the heavy modules."""
from __future__ import annotations

import pytest

from svf.pipeline.cells import BACKBONES, CELL_ID_FORMAT, CELL_KEYS, METHODS, WILDCARDS, Cell, cell_id, parse_cell_id

CELL = {"dataset": "pascal", "backbone": "resnet50", "method": "bam", "setting": "dagger", "policy": "svf",
        "recipe": "bam-paper", "shot": 5, "fold": 3, "seed": 321}


def test_id_round_trips_and_names_a_directory():
    cid = cell_id(CELL)
    assert cid == "pascal/resnet50/bam/dagger/svf/bam-paper/5shot/fold3/seed321"
    assert parse_cell_id(cid) == CELL and parse_cell_id("/" + cid + "/") == CELL
    assert Cell.from_mapping(CELL).id == cid and Cell.from_mapping(CELL).as_dict() == CELL


@pytest.mark.parametrize("bad", ["pascal/resnet50/bam", "pascal/resnet50/bam/dagger/svf/r/5shots/fold3/seed1",
                                 "pascal/resnet50/bam/dagger/svf/r/5shot/foldx/seed1"])
def test_parser_refuses_what_is_not_an_id(bad):
    with pytest.raises(ValueError, match="not a cell id"):
        parse_cell_id(bad)


def test_missing_field_is_named():
    with pytest.raises(KeyError, match="lacks parameter 'fold'"):
        cell_id({k: v for k, v in CELL.items() if k != "fold"})
    with pytest.raises(KeyError, match=r"missing \['shot'\]"):
        Cell.from_mapping({k: v for k, v in CELL.items() if k != "shot"})


def test_wildcards_give_the_snakemake_pattern():
    assert cell_id(WILDCARDS) == CELL_ID_FORMAT and set(WILDCARDS) == set(CELL_KEYS)


def test_name_lists_match_the_modules_that_build_them():
    # cells.py keeps torch-free copies for the Snakefile's wildcard constraints
    from svf.backbones import BACKBONES as BUILT_BACKBONES
    from svf.models import MODELS

    assert BACKBONES == tuple(BUILT_BACKBONES) and set(METHODS) == set(MODELS)
