"""The report tests' shared inputs: the repository's tables file and the paper's numbers, read once per module."""
from __future__ import annotations

import pytest

from fakes import PAPER_CSV, SCHEMA, TABLES_YAML
from svf.pipeline.tables import load_tables
from svf.report.comparison import read_paper


@pytest.fixture(scope="module")
def tables():
    return load_tables(TABLES_YAML, schema=SCHEMA)


@pytest.fixture(scope="module")
def paper():
    return read_paper(PAPER_CSV)
