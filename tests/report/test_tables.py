"""svf tables: reproduced vs paper per table (csv/md/tex), missing cells, gains, tolerance summary."""
from __future__ import annotations

import pandas as pd
import pytest

from svf.cli import main
from svf.report.comparison import compare, summarise
from svf.report.tables import tex_escape, write_tables
from svf.pipeline.cells import cell_id
from svf.pipeline.tables import table_entries
from fakes import PAPER_CSV, TABLES_YAML


def paper_results(tables, paper, names, shift=0.0) -> pd.DataFrame:
    """results.csv rows whose mIoU is the paper's fold value (+ shift): a perfect reproduction of those tables.

    Tables 4-8 print only means; their cells get the printed mean for every fold."""
    values = paper.set_index(["table", "row", "shot", "fold"])["value"]
    rows = {}
    for name in names:
        table = tables["tables"][name]
        fold_key = (lambda f: str(f)) if table["columns"] == "folds+mean" else (lambda f: "mean")
        for row, shot, fold, cell in table_entries(table):
            cid = cell_id(cell)
            rows.setdefault(cid, values[(name, row["id"], shot, fold_key(fold))] + shift)
    return pd.DataFrame({"cell_id": list(rows), "miou": list(rows.values()), "config_hash": "abc"})


def test_perfect_reproduction_is_all_within(tables, paper):
    results = paper_results(tables, paper, ["table1", "table2"])
    frame = compare(tables, results, paper, names=["table1", "table2"], tolerance=0.01)
    assert len(frame) == 310 and frame["shown"].all() and frame["reproduced"].notna().all()
    folds = frame[frame["fold"] != "mean"]
    assert (folds["delta"] == 0).all()
    means = frame[frame["fold"] == "mean"]
    # a recomputed mean differs from the printed one by rounding only, except the PFENet paper's row
    off = means[means["delta"].abs() > 0.011]
    assert set(off["row"]) == {"vgg16-pfenet-original-recipe"}
    summary = summarise(frame, 0.01).set_index("table")
    assert summary.loc["table1", "within"] == summary.loc["table1", "compared"] == 180
    assert summary.loc["table2", "missing"] == 0 and summary.loc["table2", "within"] == 130 - 2
    gains = means.dropna(subset=["gain"])
    off = gains[(gains["gain"] - gains["paper_gain"]).abs() > 0.02]
    assert len(gains) == 30  # the +SVF rows, 1- and 5-shot; only the paper's +1.93 typo disagrees
    assert off[["table", "row", "shot"]].values.tolist() == [["table2", "resnet50-baseline-dagger-svf", 5]]


def test_missing_cells_show_dash_and_paper_value(tables, paper, tmp_path):
    results = paper_results(tables, paper, ["table4"], shift=0.5)
    results = results[~results["cell_id"].str.contains("/bn/") | ~results["cell_id"].str.endswith("fold3/seed321")]
    write_tables(tables, results, paper, tmp_path, names=["table4"], tolerance=1.0)
    md = (tmp_path / "table4.md").read_text()
    assert "| baseline† | none | - | - | 65.57 (65.07, +0.50) |  |" in md
    assert "|  | BN | ✓ | - | — (63.12) | — (-1.95) |" in md
    assert "|  | S |  | ✓ | 67.64 (67.14, +0.50) | +2.07 (+2.07) |" in md
    assert "no result yet for this cell" in md
    assert ("4 values shown, 3 with a result, 1 without one yet; 3 compared with the paper, 3 of them within "
            "±1.00 mIoU.") in md
    wide = pd.read_csv(tmp_path / "table4.csv")
    assert wide.columns.tolist() == ["row", "group", "label", "BN", "S", "1shot_mean_reproduced", "1shot_mean_paper",
                                     "1shot_mean_delta", "1shot_gain", "1shot_paper_gain"]
    assert wide.set_index("row").loc["svf", "1shot_mean_reproduced"] == pytest.approx(67.64)
    assert wide.set_index("row")["1shot_mean_reproduced"].isna().sum() == 1
    assert not (tmp_path / "summary.md").exists()  # only when asked for


def test_table1_layout_groups_and_tex(tables, paper, tmp_path):
    results = paper_results(tables, paper, ["table1"], shift=-2.0)
    write_tables(tables, results, paper, tmp_path, names=["table1"], demo=True, summary=tmp_path / "summary.md")
    md = (tmp_path / "table1.md").read_text().splitlines()
    assert md[0] == ("### Table 1: Performance on PASCAL-5i, mIoU (%), 1-shot and 5-shot "
                     "(demo scale — not comparable to the paper)")
    header = [c.strip() for c in md[2].strip("|").split("|")]
    assert header[:8] == ["Backbone", "Method", "1-shot Fold-0", "1-shot Fold-1", "1-shot Fold-2", "1-shot Fold-3",
                          "1-shot Mean", "1-shot Gain"]
    assert len(header) == 14
    body = [line for line in md[4:] if line.startswith("|")]
    assert len(body) == 18
    groups = [line.split("|")[1].strip() for line in body]
    assert groups == ["VGG16"] + [""] * 5 + ["ResNet50"] + [""] * 11
    assert body[0].split("|")[3].strip() == "55.48 (57.48, -2.00)"
    tex = (tmp_path / "table1.tex").read_text()
    assert r"\caption{Table 1: Performance on PASCAL-5i, mIoU (\%), 1-shot and 5-shot (demo scale --- not" in tex
    assert r"\multicolumn{6}{c}{1-shot}" in tex and r"baseline$^\dagger$+SVF" in tex
    assert r"55.48 {\scriptsize (57.48, -2.00)}" in tex and "†" not in tex and "—" not in tex
    assert tex.count(r"\midrule") == 2  # after the header and between the VGG16 and ResNet50 blocks
    summary = (tmp_path / "summary.md").read_text()
    assert "demo scale — not comparable to the paper" in summary
    assert "| table1 | 180 | 180 | 180 | 0 of 180 | 0 |" in summary


def test_fold_restriction_means_are_not_compared(tables, paper):
    results = paper_results(tables, paper, ["table5"])
    frame = compare(tables, results, paper, names=["table5"], folds=[0], tolerance=1.0)
    assert len(frame) == 12 and (frame["fold"] == "mean").sum() == 6
    means = frame[frame["fold"] == "mean"]
    assert not means["comparable"].any() and not means["within"].any()
    assert means["reproduced"].notna().all()
    assert summarise(frame, 1.0).loc[0, "compared"] == 0


def test_fold_subset_means_are_shown_beside_the_papers_without_a_difference(tables, paper, tmp_path):
    results = paper_results(tables, paper, ["table4", "table1"], shift=0.5)  # shared cells: table4's means
    write_tables(tables, results, paper, tmp_path, names=["table1", "table4"], folds=[0], shots=[1],
                 summary=tmp_path / "summary.md")
    table4 = (tmp_path / "table4.md").read_text()
    assert "|  | S |  | ✓ | 67.64 (paper's 4-fold mean 67.14) |" in table4  # not "(67.14, +0.50)"
    assert "(paper's, 4 folds: +2.07)" in table4 and "Only fold 0 ran" in table4
    summary = (tmp_path / "summary.md").read_text()
    # a value with a result is not called "reproduced", and an uncompared mean is not counted as compared
    assert "| Table | Values shown | With a result | Compared with the paper | Within ±1.00 of the paper |" in summary
    assert "| table4 | 4 | 4 | 0 | n/a | 0 |" in summary and "| table1 | 36 | 36 | 18 | 18 of 18 | 0 |" in summary
    assert "Reproduced" not in summary and "not reproduced yet" not in summary
    assert "22 values with a result are not compared: they are means over fewer folds" in summary


def test_tex_escape():
    assert tex_escape("a_b & 50% † ✓ 3×3 #1 {x} ~ ^") == (
        r"a\_b \& 50\% $^\dagger$ \checkmark 3$\times$3 \#1 \{x\} \textasciitilde{} \textasciicircum{}")


def test_cli_all_tables_and_mixed_config_guard(tables, paper, tmp_path, capsys):
    results = paper_results(tables, paper, list(tables["tables"]))
    assert len(results) == 316
    results["device_hours"], results["device"] = 0.5, "cuda:0"
    results.to_csv(tmp_path / "results.csv", index=False)
    args = ["tables", "--results", str(tmp_path / "results.csv"), "--tables", str(TABLES_YAML), "--paper",
            str(PAPER_CSV), "--out", str(tmp_path / "out"), "--tolerance", "0.5"]
    assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(["summary.md", "comparison.csv"] + [f"table{n}.{e}" for n in (1, 2, 4, 5, 6, 7, 8)
                                                               for e in ("csv", "md", "tex")])
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| table7 | 7 | 7 | 7 | 7 of 7 | 0 |" in summary and "| table5 | 6 | 6 | 6 | 6 of 6 | 0 |" in summary
    assert "| 72.00 (cuda) |" in summary and "| 8.00 (cuda) |" in summary  # table1: 144 cells, table4: 16
    results.loc[0, "config_hash"] = "other"
    results.to_csv(tmp_path / "results.csv", index=False)
    assert main(args + ["--only", "table4"]) == 11  # a results error
    assert "2 config hashes" in capsys.readouterr().err
    assert main(args + ["--only", "table4", "--allow-mixed-config"]) == 0
    assert main(args + ["--only", "table3", "--allow-mixed-config"]) == 11
    assert "table3" in capsys.readouterr().err


def test_imported_cells_show_the_recorded_number_and_flag_what_weights_did_not_reproduce(tables, paper, tmp_path):
    """Cells from a results bundle: the re-evaluated value, the paper's, and the bundle's recorded number; a value
    whose re-evaluation strays beyond the re-evaluation tolerance is flagged, one within it is not."""
    results = paper_results(tables, paper, ["table4"])
    results["recorded_miou"] = results["miou"]
    strays = results["cell_id"].str.contains("/bn/")  # Table 4's BN row, every fold
    results.loc[strays, "recorded_miou"] += 0.3
    results.loc[~strays & results["cell_id"].str.endswith("fold1/seed321"), "recorded_miou"] += 0.04
    args = dict(names=["table4"], tolerance=1.0, summary=tmp_path / "summary.md", comparison=tmp_path / "c.csv")
    write_tables(tables, results, paper, tmp_path, reevaluation_tolerance=0.05, **args)
    markdown = (tmp_path / "table4.md").read_text()
    bn = next(line for line in markdown.splitlines() if line.startswith("|") and "| BN | ✓ | - |" in line)
    assert "; recorded" in bn and "not reproduced from weights" in bn
    others = [line for line in markdown.splitlines() if "; recorded" in line and line != bn]
    assert len(others) == 3 and not any("not reproduced" in line for line in others)
    assert "1 of 4 values" in markdown and "more than 0.05 mIoU" in markdown
    wide = pd.read_csv(tmp_path / "table4.csv").set_index("row")
    assert wide["1shot_mean_not_reproduced"].tolist().count(True) == 1
    assert wide.loc["bn", "1shot_mean_recorded"] == pytest.approx(wide.loc["bn", "1shot_mean_reproduced"] + 0.3)
    assert "3 of 4 shown values re-evaluated here within ±0.05" in (tmp_path / "summary.md").read_text()
    write_tables(tables, results, paper, tmp_path, reevaluation_tolerance=0.5, **args)
    assert "not reproduced from weights" not in (tmp_path / "table4.md").read_text().split("- Imported")[0]
    plain = results.drop(columns=["recorded_miou"])  # a run that imported nothing: no trace of bundles
    write_tables(tables, plain, paper, tmp_path, **args)
    assert "recorded" not in (tmp_path / "table4.md").read_text()
    assert "recorded" not in pd.read_csv(tmp_path / "table4.csv").columns.str.cat()
