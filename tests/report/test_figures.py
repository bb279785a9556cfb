"""svf figure6 / curves / overview on fake cells: the right layers and numbers, files written, clear errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from svf.cli import main
from svf.report.curves import epoch_curves, read_train_logs
from svf.report.figures import FigureError, figure6_data, figure6_layers
from svf.pipeline.cells import cell_id
from svf.pipeline.tables import cells_of
from fakes import PAPER_CSV, TABLES_YAML, write_fake_cells

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def svf_cells(tmp_path, tables):
    """The Figure 6 cells (R50 baseline†+SVF 1-shot) of folds 0 and 1, on disk."""
    cells = cells_of(tables, ["table1"], row_ids=["resnet50-baseline-dagger-svf"], shots=[1], folds=[0, 1])
    return write_fake_cells(tmp_path / "cells", None, cells, lambda c: 60.0)


def test_figure6_layers_pick_the_last_layer3_block():
    names = ["layer3.0.conv2", "layer3.0.conv3", "layer3.5.conv2", "layer3.5.conv3", "layer3.10.conv1",
             "layer4.2.conv2", "layer3.5.downsample.0"]
    assert figure6_layers(names) == {"3×3": "layer3.5.conv2", "1×1": "layer3.5.conv3"}
    assert figure6_layers(["layer3.1.conv2.vector_S", "layer3.1.conv3.vector_S"])["1×1"] == "layer3.1.conv3.vector_S"
    with pytest.raises(FigureError, match=r"sv.json: no layer3 block with both conv2 \(3×3\) and conv3"):
        figure6_layers(["layer3.0.conv2", "layer4.0.conv3"], "sv.json")


def test_figure6_data_top_values_and_change(tmp_path, svf_cells):
    path = tmp_path / "cells" / svf_cells[0] / "singular_values.json"
    sv = json.loads(path.read_text())
    sv["before"]["layer3.1.conv2"] = [1.0, 5.0, 3.0, 4.0]  # unsorted on purpose: the top-k is by value
    sv["after"]["layer3.1.conv2"] = [1.5, 4.0, 3.0, 4.5]
    path.write_text(json.dumps(sv))
    data = figure6_data(tmp_path / "cells", svf_cells, top=3)
    three = data[(data["cell_id"] == svf_cells[0]) & (data["kind"] == "3×3")]
    assert three["index"].tolist() == [1, 3, 2]
    assert three["before"].tolist() == [5.0, 4.0, 3.0] and three["change"].tolist() == [-1.0, 0.5, 0.0]
    assert sorted(data["fold"].unique()) == [0, 1] and set(data["layer"]) == {"layer3.1.conv2", "layer3.1.conv3"}
    assert len(data) == 2 * 2 * 3


def test_figure6_cli_writes_png_pdf_and_data(tmp_path, svf_cells):
    out = tmp_path / "figures" / "figure6_singular_values.png"
    assert main(["figure6", "--cells-root", str(tmp_path / "cells"), "--cells", *svf_cells, "--out", str(out),
                 "--top", "10", "--data", str(tmp_path / "figures" / "figure6.csv")]) == 0
    assert out.read_bytes()[:8] == PNG and out.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert len(pd.read_csv(tmp_path / "figures" / "figure6.csv")) == 2 * 2 * 10
    assert sorted(p.name for p in out.parent.iterdir()) == ["figure6.csv", "figure6_singular_values.pdf",
                                                            "figure6_singular_values.png"]


def test_figure6_cli_error_names_missing_file(tmp_path, tables, capsys):
    frozen = cells_of(tables, ["table4"], row_ids=["frozen"], folds=[0])
    ids = write_fake_cells(tmp_path / "cells", None, frozen, lambda c: 60.0)  # frozen: no singular values
    assert main(["figure6", "--cells-root", str(tmp_path / "cells"), "--cells", *ids,
                 "--out", str(tmp_path / "f.png")]) == 11
    err = capsys.readouterr().err
    assert "svf figure6: results error:" in err and "Traceback" not in err
    assert f"{ids[0]}/singular_values.json: singular values file not found" in err


def test_epoch_curves_aggregate_steps(tmp_path, svf_cells):
    curves = epoch_curves(read_train_logs(tmp_path / "cells", svf_cells))
    assert len(curves) == 2 * 3  # 2 cells x 3 epochs
    first = curves[(curves["cell_id"] == svf_cells[0])].set_index("epoch")
    assert first.loc[2, "val_miou"] == pytest.approx(60.0) and first.loc[0, "val_miou"] == pytest.approx(58.0)
    assert first.loc[0, "loss"] == pytest.approx((1 + 1 / 1.25 + 1 / 1.5 + 1 / 1.75) / 4, abs=1e-3)
    assert set(curves["policy"]) == {"svf"} and set(curves["fold"]) == {0, 1}


def test_curves_and_overview_cli(tmp_path, tables):
    cells = cells_of(tables, ["table4"])
    ids = write_fake_cells(tmp_path / "cells", tmp_path / "bench", cells, lambda c: 60.0 + c["fold"])
    assert main(["curves", "--cells-root", str(tmp_path / "cells"), "--cells", *ids, "--title", "table4",
                 "--out", str(tmp_path / "curves_table4.png")]) == 0
    assert (tmp_path / "curves_table4.png").read_bytes()[:8] == PNG
    assert main(["collect", "--cells-root", str(tmp_path / "cells"), "--benchmarks", str(tmp_path / "bench"),
                 "--out", str(tmp_path / "results.csv")]) == 0
    assert main(["overview", "--results", str(tmp_path / "results.csv"), "--tables", str(TABLES_YAML),
                 "--paper", str(PAPER_CSV), "--only", "table1", "table4", "--demo",
                 "--out", str(tmp_path / "overview.png")]) == 0
    assert (tmp_path / "overview.png").read_bytes()[:8] == PNG
    missing = cell_id(cells_of(tables, ["table5"], row_ids=["full"], folds=[0])[0])
    assert main(["curves", "--cells-root", str(tmp_path / "cells"), "--cells", missing,
                 "--out", str(tmp_path / "c.png")]) == 11


def test_curve_panels_follow_the_tables_reference_rows(tables):
    from svf.report.curves import row_groups

    t = tables["tables"]
    assert [[r["id"] for r in g] for g in row_groups(t["table1"])][:2] == [
        ["vgg16-baseline-dagger", "vgg16-baseline-dagger-svf"], ["vgg16-pfenet-dagger", "vgg16-pfenet-dagger-svf"]]
    assert [len(g) for g in row_groups(t["table1"])] == [2] * 9
    assert [len(g) for g in row_groups(t["table5"])] == [6]  # frozen and the five rows compared with it
    assert [len(g) for g in row_groups(t["table7"])] == [7]  # no reference row: one panel


def test_figures_fit_a_page_label_their_axes_and_carry_the_demo_mark(tmp_path, tables, svf_cells):
    from svf.report.curves import plot_curves
    from svf.report.figures import PAGE_WIDTH_IN, plot_figure6, plot_overview
    from svf.report.comparison import compare, read_paper
    from svf.report.tables import DEMO_NOTE

    cells = cells_of(tables, ["table4"], folds=[0])
    ids = write_fake_cells(tmp_path / "cells4", tmp_path / "bench", cells, lambda c: 40.0)
    results = pd.DataFrame({"cell_id": ids, "miou": 40.0, "config_hash": "abc"})
    frame = compare(tables, results, read_paper(PAPER_CSV), names=["table1", "table4"], folds=[0], shots=[1])
    figures = {
        "figure6": plot_figure6(figure6_data(tmp_path / "cells", svf_cells), demo=True),
        "curves": plot_curves(epoch_curves(read_train_logs(tmp_path / "cells4", ids)), "Table 4",
                              tables["tables"]["table4"], demo=True),
        "overview": plot_overview(tables, frame, 1.0, demo=True),
    }
    for name, fig in figures.items():
        assert fig.get_figwidth() == pytest.approx(PAGE_WIDTH_IN), name
        assert DEMO_NOTE.upper() in fig._suptitle.get_text(), name
        shown = [ax for ax in fig.axes if ax.axison]
        assert shown and all(ax.get_ylabel() for ax in shown) and shown[-1].get_xlabel(), name
    panels = [ax for ax in figures["figure6"].axes]
    assert [ax.get_title(loc="left")[:3] for ax in panels] == ["(a)", "(b)"]
    bars = [ax for ax in figures["overview"].axes if ax.get_title(loc="left") == "Table 4"][0]
    assert bars.get_xlim()[0] == 0  # bars start at 0
    assert "ours (fold 0 only)" in [t.get_text() for t in bars.get_legend().get_texts()]
    lines = figures["curves"].axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["none", "BN", "BN + S", "S"]  # the table's row labels
    assert len({line.get_color() for line in lines}) == 4


def test_figure4_class_names_describe_the_synthetic_looks(pascal_data):
    """Figure 4's titles name each class and, on synthetic data, the look standing in for it (a broken import here
    once failed only in the slow demo test)."""
    from svf.report.figure4 import TEXTURE_WORDS, class_names

    names = class_names(pascal_data["root"])
    assert len(names) == 20 and names[15].startswith("person (")
    assert any(word in names[1] for word in TEXTURE_WORDS.values())
