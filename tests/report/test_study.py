"""The study's statistics on made-up results: the stratified interval, paired differences and claim verdicts."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from svf.cli import main
from svf.report.study import AGREES, CANNOT_TELL, DISAGREES, stratified_interval, study_frame, verdict
from svf.report.tables import read_paper
from svf.pipeline.cells import cell_id
from svf.pipeline.tables import cells_of, load_tables
from fakes import PAPER_CSV, SCHEMA, TABLES_YAML

SEEDS = (321, 322, 323)


@pytest.fixture(scope="module")
def tables():
    return load_tables(TABLES_YAML, schema=SCHEMA)


def test_interval_is_the_pooled_within_fold_t_interval():
    values = pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "value": [10.0, 12.0, 14.0, 20.0, 21.0, 22.0]})
    got = stratified_interval(values)
    # fold means 12 and 21; pooled variance (8 + 2) / 4 = 2.5 with 4 df; var of the mean of two fold means
    # = (2.5/3 + 2.5/3) / 4
    half = stats.t.ppf(0.975, 4) * math.sqrt((2.5 / 3 + 2.5 / 3) / 4)
    assert got["estimate"] == pytest.approx(16.5) and got["df"] == 4 and got["n"] == 6
    assert got["half_width"] == pytest.approx(half) and got["low"] == pytest.approx(16.5 - half)


def test_one_seed_per_fold_has_no_interval():
    got = stratified_interval(pd.DataFrame({"fold": [0, 1], "value": [1.0, 2.0]}))
    assert got["estimate"] == 1.5 and math.isnan(got["half_width"]) and got["df"] == 0


@pytest.mark.parametrize("low, high, paper, expected", [
    (0.5, 2.0, 2.07, AGREES), (-3.0, -1.0, -1.95, AGREES), (0.5, 2.0, -0.87, DISAGREES),
    (-3.0, -0.1, 2.07, DISAGREES), (-0.5, 1.0, 2.07, CANNOT_TELL), (math.nan, math.nan, 2.0, CANNOT_TELL),
    (0.5, 1.0, math.nan, CANNOT_TELL),
])
def test_verdicts(low, high, paper, expected):
    assert verdict(low, high, paper) == expected


def _results(tables, effect, noise=0.3, seed=0):
    """Table 4's cells for three seeds: fold level + the row's effect + per-seed noise (the seed effect is shared
    by the rows of a seed, as the same seed gives the same data order)."""
    rng = np.random.default_rng(seed)
    fold_level = {f: 40.0 + 5 * f for f in range(4)}
    seed_effect = {s: rng.normal(0, 2.0) for s in SEEDS}
    rows = []
    for cell in cells_of(tables, ["table4"], seeds=SEEDS):
        value = fold_level[cell["fold"]] + seed_effect[cell["seed"]] + effect[cell["policy"]] + rng.normal(0, noise)
        rows.append({"cell_id": cell_id(cell), "miou": value})
    return pd.DataFrame(rows)


def _no_effect(results: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Make ``policy`` equal frozen plus +1, -1, 0 over the seeds of each fold: a mean difference of exactly 0."""
    out = results.set_index("cell_id")["miou"].copy()
    for cid in out.index:
        if f"/{policy}/" in cid:
            seed = int(cid.rsplit("seed", 1)[1])
            out[cid] = out[cid.replace(f"/{policy}/", "/frozen/")] + {321: 1.0, 322: -1.0, 323: 0.0}[seed]
    return out.rename("miou").reset_index()


def test_claims_on_made_up_results(tables):
    # paper: BN -1.95, BN+S -0.87, S +2.07 against frozen
    results = _no_effect(_results(tables, {"frozen": 0.0, "bn": -3.0, "svf-bn": 3.0, "svf": 0.0}), "svf")
    frame = study_frame(tables, results, read_paper(PAPER_CSV), ["table4"], seeds=SEEDS).set_index("row")
    assert frame.loc["bn", "verdict"] == AGREES and frame.loc["bn", "diff"] == pytest.approx(-3.0, abs=0.5)
    assert frame.loc["svf-bn", "verdict"] == DISAGREES
    assert frame.loc["svf", "verdict"] == CANNOT_TELL  # no effect: the interval holds 0
    assert frame.loc["frozen", "verdict"] == "" and frame.loc["frozen", "paper"] == pytest.approx(65.07)
    assert frame.loc["svf", "paper_diff"] == pytest.approx(2.07)
    # pairing removes the shared seed effect: the difference's interval is much narrower than the row's
    assert (frame.loc["bn", "diff_high"] - frame.loc["bn", "diff_low"]) < (frame.loc["bn", "high"]
                                                                         - frame.loc["bn", "low"]) / 2


def test_missing_cells_leave_the_row_undecided(tables):
    results = _results(tables, {"frozen": 0.0, "bn": -3.0, "svf-bn": 3.0, "svf": 3.0})
    results = results[~results["cell_id"].str.contains("/svf/")]
    frame = study_frame(tables, results, read_paper(PAPER_CSV), ["table4"], seeds=SEEDS).set_index("row")
    assert math.isnan(frame.loc["svf", "mean"]) and frame.loc["svf", "verdict"] == CANNOT_TELL


def test_cli_writes_summary_csv_and_figures(tables, tmp_path):
    results = _results(tables, {"frozen": 0.0, "bn": -3.0, "svf-bn": 3.0, "svf": 3.0})
    results.assign(config_hash="abc").to_csv(tmp_path / "r.csv", index=False)
    code = main(["study", "--results", str(tmp_path / "r.csv"), "--tables", str(TABLES_YAML), "--paper",
                 str(PAPER_CSV), "--out", str(tmp_path / "study"), "--figures-dir", str(tmp_path / "fig"),
                 "--only", "table4", "--seeds", *map(str, SEEDS), "--references", "table4=frozen", "--demo"])
    assert code == 0
    md = (tmp_path / "study" / "study.md").read_text()
    assert "Claims: 2 agree, 1 disagree, 0 cannot tell." in md
    assert "| S > none | agrees |" in md
    assert (tmp_path / "fig" / "study_table4.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "study" / "study.csv")) == 4
    code = main(["study", "--results", str(tmp_path / "r.csv"), "--tables", str(TABLES_YAML), "--paper",
                 str(PAPER_CSV), "--out", str(tmp_path / "s2"), "--figures-dir", str(tmp_path / "f2"),
                 "--only", "table4", "--references", "table4=no-such-row"])
    assert code == 11
