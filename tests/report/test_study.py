"""The study's statistics and verdicts on constructed results whose answer is known (docs/study.md)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from svf.cli import main
from svf.pipeline.cells import cell_id
from svf.pipeline.tables import cells_of
from svf.report.claims import (AGREES, CANNOT_TELL, DISAGREES, EQUIVALENCE, EQUIVALENT, NOT_EQUIVALENT, Claim,
                               claim_statistics, decide, holm, pairs_for_assurance, pairs_for_half_width,
                               stratified_mean)
from svf.report.study import claims_of, power_line, seed_clustered_p, study_frames, study_rows
from fakes import PAPER_CSV, TABLES_YAML

NAMES = ["table4", "table5", "table6", "table7", "table8"]
SEEDS = (1, 2, 3)


def test_stratified_mean_is_the_pooled_within_fold_t_interval():
    values = pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "value": [10.0, 12.0, 14.0, 20.0, 21.0, 22.0]})
    got = stratified_mean(values)
    # fold means 12 and 21; pooled variance (8 + 2) / 4 = 2.5 on 4 df; var of the mean of the fold means
    # = (2.5/3 + 2.5/3) / 4
    half = stats.t.ppf(0.975, 4) * math.sqrt((2.5 / 3 + 2.5 / 3) / 4)
    assert got["estimate"] == pytest.approx(16.5) and got["df"] == 4 and got["n"] == 6
    assert got["half_width"] == pytest.approx(half) and got["low"] == pytest.approx(16.5 - half)


def test_one_seed_per_fold_has_no_interval():
    got = stratified_mean(pd.DataFrame({"fold": [0, 1], "value": [1.0, 2.0]}))
    assert got["estimate"] == 1.5 and math.isnan(got["half_width"]) and got["df"] == 0


def test_with_one_fold_the_tests_are_scipys_paired_t_and_statsmodels_tost():
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(0)
    a = rng.normal(40, 3, 10)
    b = a - 0.3 + rng.normal(0, 0.8, 10)
    got = claim_statistics(pd.DataFrame({"fold": 0, "value": a - b}), margin=1.0)
    assert got["p_zero"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert got["p_tost"] == pytest.approx(ttost_paired(a, b, -1.0, 1.0)[0], rel=1e-9)


def test_holm_adjusts_as_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, math.nan])[1] == 1.0  # a claim that could not be tested counts as p = 1


def test_distinct_claims_count_each_comparison_once(tables, paper):
    rows = study_rows(tables, NAMES)
    claims = {c.key: c for c in claims_of(rows, tables, NAMES, paper)}
    # 21 printed comparisons: SVF vs frozen three times, part 2-4 vs frozen twice; plus SVF vs full (primary)
    assert len(claims) == 19 and len(rows) == 19
    assert claims["svf vs frozen"].tables == ("table4", "table5", "table6")
    assert claims["part-l234 vs frozen"].tables == ("table5", "table6")
    assert claims["svf vs full"].tables == () and claims["svf vs full"].paper_diff == pytest.approx(67.14 - 60.90)
    assert sorted(k for k, c in claims.items() if c.primary) == sorted(
        ["svf vs frozen", "full vs frozen", "svf vs full", "svf-U vs svf", "svf-V vs svf"])
    assert sorted(k for k, c in claims.items() if c.kind == EQUIVALENCE) == sorted(
        ["svf-bn vs frozen", "svf-l4 vs svf", "svf-l34 vs svf", "svf-l1234 vs svf"])


def _results(tables, effect, noise, seeds=SEEDS, floor=15.0, seed=0):
    """Every study cell: fold level + a seed (world) effect shared by the rows of a seed + the row's effect +
    independent noise of SD ``noise[row]`` (default 0.2)."""
    rng = np.random.default_rng(seed)
    seed_effect = {s: rng.normal(0, 3.0) for s in seeds}
    records = []
    for cell in cells_of(tables, NAMES, seeds=seeds):
        value = 40 + 3 * cell["fold"] + seed_effect[cell["seed"]] + effect.get(cell["policy"], 0.0) + rng.normal(
            0, noise.get(cell["policy"], 0.2))
        records.append({**cell, "cell_id": cell_id(cell), "miou": value, "all_foreground_miou": floor})
    return pd.DataFrame.from_records(records)


def test_verdicts_on_results_with_a_known_answer(tables, paper):
    effect = {"svf": 3.0, "bn": 3.0, "full": -4.0, "svf-l4": 5.0, "svf-U": 2.0}  # others: 0
    noise = {"part-l34": 6.0}
    claims, rows = study_frames(tables, _results(tables, effect, noise), paper, NAMES)
    verdicts = claims.set_index("claim")["verdict"]
    assert verdicts["svf vs frozen"] == AGREES            # +3, paper +2.07
    assert verdicts["bn vs frozen"] == DISAGREES          # +3, paper -1.95
    assert verdicts["full vs frozen"] == AGREES           # -4, paper -4.17
    assert verdicts["svf vs full"] == AGREES              # +7, paper +6.24
    assert verdicts["svf-U vs svf"] == AGREES             # -1 (2 - 3), paper -6.05: the sign decides
    assert verdicts["svf-bn vs frozen"] == EQUIVALENT     # 0 within +-1, paper -0.87
    assert verdicts["svf-l4 vs svf"] == NOT_EQUIVALENT    # +2, paper -0.93: outside the margin
    assert verdicts["part-l34 vs frozen"] == CANNOT_TELL  # no effect, large noise
    svf = claims.set_index("claim").loc["svf vs frozen"]
    assert svf["estimate"] == pytest.approx(3.0, abs=0.3) and svf["n"] == 12 and svf["folds"] == 4
    assert svf["half_width"] < 0.5 and svf["detectable"] > svf["half_width"]
    assert not svf["paper_in_interval"]  # 2.07 is outside [2.7, 3.3]
    assert (rows["failed"] == 0).all() and (rows["runs"] == 12).all()


def test_the_paired_design_removes_the_shared_seed_effect(tables, paper):
    claims, rows = study_frames(tables, _results(tables, {"svf": 3.0}, {}), paper, NAMES)
    row = rows.set_index("row").loc["svf"]
    claim = claims.set_index("claim").loc["svf vs frozen"]
    assert claim["half_width"] < (row["high"] - row["low"]) / 4


def test_failed_runs_are_counted_against_the_all_foreground_floor(tables, paper):
    results = _results(tables, {}, {})
    frozen_fold0 = (results["policy"] == "frozen") & (results["fold"] == 0)
    results.loc[frozen_fold0, "miou"] = 10.0  # below the floor of 15
    _, rows = study_frames(tables, results, paper, NAMES)
    frozen = rows.set_index("row").loc["frozen"]
    assert frozen["failed"] == 3 and frozen["failure_rate"] == pytest.approx(0.25)


def test_extra_seeds_of_some_rows_pair_only_where_both_ran(tables, paper):
    results = _results(tables, {"svf": 3.0}, {}, seeds=(1, 2, 3, 4, 5))
    keep = results["seed"].isin([1, 2, 3]) | results["policy"].isin(["svf", "frozen"])
    claims, _ = study_frames(tables, results[keep], paper, NAMES)
    claims = claims.set_index("claim")
    assert claims.loc["svf vs frozen", "n"] == 20 and claims.loc["bn vs frozen", "n"] == 12


def test_missing_rows_leave_their_claims_undecided(tables, paper):
    results = _results(tables, {"svf": 3.0}, {})
    claims, rows = study_frames(tables, results[results["policy"] != "svf-U"], paper, NAMES)
    assert claims.set_index("claim").loc["svf-U vs svf", "verdict"] == CANNOT_TELL
    assert rows.set_index("row").loc["svf-U", "runs"] == 0


def test_seed_clustered_sensitivity_uses_one_value_per_seed():
    d = pd.DataFrame({"fold": [0, 1] * 3, "seed": [1, 1, 2, 2, 3, 3], "value": [1.0, 3, 2, 4, 5, 1]})
    assert seed_clustered_p(d) == pytest.approx(stats.ttest_1samp([2.0, 3.0, 3.0], 0).pvalue)
    same = pd.DataFrame({"fold": [0, 1] * 2, "seed": [1, 1, 2, 2], "value": [1.0, 3, 2, 2]})
    assert math.isnan(seed_clustered_p(same))  # identical seed means: no variance to test with


def test_pairs_for_the_half_width_target_are_the_smallest_multiple_of_the_folds_that_meets_it():
    # the third design's measured SDs give the fourth design's pairs (docs/study.md, "Power")
    assert [pairs_for_half_width(sd, 4) for sd in (0.748, 3.606, 4.822, 5.942)] == [8, 28, 44, 64]
    for sd, folds in [(2.0, 1), (5.0, 4), (9.0, 3)]:
        n = pairs_for_half_width(sd, folds)
        half = stats.t.ppf(0.975, n - folds) * sd / math.sqrt(n)
        fewer = stats.t.ppf(0.975, n - 2 * folds) * sd / math.sqrt(n - folds) if n > 2 * folds else math.inf
        assert n % folds == 0 and half <= 1.5 < fewer
    assert math.isnan(pairs_for_half_width(math.nan, 4)) and math.isnan(pairs_for_half_width(1e6, 4))


def _seeds(values_by_seed):
    """Paired differences (fold, seed, value) from {seed: [value on fold 0, fold 1, ...]}."""
    return pd.DataFrame([{"fold": f, "seed": s, "value": v} for s, vs in values_by_seed.items()
                         for f, v in enumerate(vs)])


def test_pairs_for_assurance_resamples_the_seeds_of_a_claim():
    # no spread within folds: any two seeds meet the target in every draw
    assert pairs_for_assurance(_seeds({s: [1.0, -2.0, 0.5, 3.0] for s in range(5)})) == 8
    # normal differences, SD 3, one fold: the rule at the SD meets the target about half the time, so 80% assurance
    # needs more pairs than the rule, but not twice as many
    rng = np.random.default_rng(1)
    d = _seeds({s: [v] for s, v in enumerate(rng.normal(0.0, 3.0, 400))})
    rule = pairs_for_half_width(3.0, 1)
    assert rule < pairs_for_assurance(d) < 1.5 * rule
    # one seed in ten collapses (a difference of 20 on every fold): the rare collapses, not the usual spread, set the
    # pairs; without them the same differences need the fewest
    calm = {s: [0.5 * (s % 3)] * 4 for s in range(30)}
    collapses = {**calm, **{s: [20.0] * 4 for s in range(0, 30, 10)}}
    assert pairs_for_assurance(_seeds(calm)) == 8 < pairs_for_assurance(_seeds(collapses))
    assert pairs_for_assurance(_seeds(collapses)) == pairs_for_assurance(_seeds(collapses))  # deterministic
    # too few complete seeds, or a target no resample reaches within max_seeds
    assert math.isnan(pairs_for_assurance(_seeds({1: [1.0, 2.0]})))
    assert math.isnan(pairs_for_assurance(_seeds(collapses), max_seeds=3))
    assert math.isnan(pairs_for_assurance(_seeds({1: [1.0, 2.0], 2: [3.0]})))  # seed 2 lacks fold 1: one complete


def test_the_report_states_each_primary_claims_sd_and_the_pairs_it_needs(tables, paper):
    noise = {"svf-U": 8.0}  # U - S spreads 8 within folds: 12 pairs cannot reach the target
    claims, _ = study_frames(tables, _results(tables, {"svf": 3.0}, noise), paper, NAMES)
    by_claim = claims.set_index("claim")
    u = by_claim.loc["svf-U vs svf"]
    assert u["sd"] == pytest.approx(u["se"] * math.sqrt(u["n"])) and u["half_width"] > 1.5
    assert u["pairs_for_target"] == pairs_for_half_width(u["sd"], 4) > u["n"]
    line = power_line(claims[claims["primary"]])
    met = int((claims[claims["primary"]]["half_width"] <= 1.5).sum())
    assert line.startswith(f"Power: {met} of 5 primary claims") and f"(has {u['n']})" in line
    assert u["pairs_for_assurance"] > u["n"] and f"svf-U vs svf: {u['pairs_for_assurance']:.0f}" in line
    assert math.isnan(by_claim.loc["bn vs frozen", "pairs_for_assurance"])  # a secondary claim: not computed


def test_decide_with_a_single_claim_and_no_data_cannot_tell():
    frame = decide([Claim("a", "b", 2.0)], {})
    assert frame.loc[0, "verdict"] == CANNOT_TELL and frame.loc[0, "n"] == 0


def test_cli_writes_the_study(tables, tmp_path):
    results = _results(tables, {"svf": 3.0}, {}).assign(config_hash="abc")
    results.to_csv(tmp_path / "r.csv", index=False)
    code = main(["study", "--results", str(tmp_path / "r.csv"), "--tables", str(TABLES_YAML), "--paper",
                 str(PAPER_CSV), "--out", str(tmp_path / "study"), "--figures-dir", str(tmp_path / "fig"),
                 "--demo"])
    assert code == 0
    md = (tmp_path / "study" / "study.md").read_text()
    assert "19 distinct claims of Tables 4, 5, 6, 7, 8" in md and "Primary claims" in md and "demo scale" in md
    assert len(pd.read_csv(tmp_path / "study" / "study.csv")) == 19
    assert (tmp_path / "fig" / "study_claims.png").stat().st_size > 10_000
    assert (tmp_path / "fig" / "study_rows.png").is_file()
    code = main(["study", "--results", str(tmp_path / "r.csv"), "--tables", str(TABLES_YAML), "--paper",
                 str(PAPER_CSV), "--out", str(tmp_path / "s2"), "--figures-dir", str(tmp_path / "f2"),
                 "--references", "table4=no-such-row"])
    assert code == 11  # a results error: one paragraph naming the row, its own exit code
    code = main(["study", "--results", str(tmp_path / "r.csv"), "--tables", str(TABLES_YAML), "--paper",
                 str(PAPER_CSV), "--out", str(tmp_path / "s3"), "--figures-dir", str(tmp_path / "f3"), "--only",
                 "table5", "--primary", "svf vs frozen", "full vs frozen", "svf vs full"])
    md = (tmp_path / "s3" / "study.md").read_text()  # the second world's study: Table 5's 6 claims, 3 primary
    assert code == 0 and "6 distinct claims of Table 5 (3 primary)" in md and "over all 6 claims" in md
