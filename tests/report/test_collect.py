"""svf collect: metrics.json + benchmarks -> results.csv, config-hash guard, clear errors, atomic writes."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from svf.cli import main
from svf.report.collect import CollectError, RESULT_COLUMNS, collect, read_results, write_results
from svf.pipeline.cells import cell_id
from svf.pipeline.tables import cells_of, load_tables
from fakes import SCHEMA, SV_LAYERS, TABLES_YAML, write_fake_cell, write_fake_cells


@pytest.fixture(scope="module")
def table4_cells():
    return cells_of(load_tables(TABLES_YAML, schema=SCHEMA), ["table4"])


def _miou(cell):
    return 50.0 + cell["fold"] + (5.0 if cell["policy"] == "svf" else 0.0)


def test_one_row_per_cell_with_every_column(tmp_path, table4_cells):
    ids = write_fake_cells(tmp_path / "cells", tmp_path / "bench", table4_cells, _miou)
    results = collect(tmp_path / "cells", tmp_path / "bench")
    assert len(results) == 16 and sorted(results["cell_id"]) == sorted(ids)
    assert list(results.columns[:len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    # per-class IoU: the 5 novel classes of each fold, numeric order (class_iou_2 before class_iou_10)
    assert list(results.columns[len(RESULT_COLUMNS):]) == [f"class_iou_{k}" for k in range(1, 21)]
    row = results.set_index("cell_id").loc[cell_id(table4_cells[5])]
    assert row["miou"] == _miou(table4_cells[5]) and row["fb_iou"] == row["miou"] + 10
    assert row["train_bench_s"] == 3600.0 and row["eval_bench_s"] == 360.0
    assert row["device_hours"] == pytest.approx(1.1) and np.isnan(row["gpu_hours"])  # cpu: not GPU-hours
    assert row["class_iou_9"] == row["miou"] + 1.0 and np.isnan(row["class_iou_1"])  # fold 1 = classes 6..10


def test_gpu_hours_only_on_cuda_and_missing_benchmarks(tmp_path, table4_cells):
    write_fake_cell(tmp_path / "cells", tmp_path / "bench", table4_cells[0], 60.0, device="cuda:0",
                    train_s=7200.0, eval_s=0.0)
    write_fake_cell(tmp_path / "cells", None, table4_cells[1], 60.0)  # run by hand: no benchmark files
    results = collect(tmp_path / "cells", tmp_path / "bench").set_index("cell_id")
    gpu = results.loc[cell_id(table4_cells[0])]
    assert gpu["gpu_hours"] == pytest.approx(2.0) and gpu["device"] == "cuda:0"
    assert results.loc[cell_id(table4_cells[1]), ["device_hours", "gpu_hours"]].isna().all()


def test_mixed_config_hashes_refused_with_names_and_counts(tmp_path, table4_cells):
    write_fake_cells(tmp_path / "cells", tmp_path / "bench", table4_cells[:3], _miou, config_hash="aaaa11112222")
    write_fake_cells(tmp_path / "cells", tmp_path / "bench", table4_cells[3:4], _miou, config_hash="bbbb33334444")
    with pytest.raises(CollectError, match=r"2 config hashes: aaaa11112222 \(3 cells.*bbbb33334444 \(1 cells, "
                                           r"e\.g\. pascal/resnet50/baseline/dagger/frozen/svf-code/1shot/fold3/seed321\)"):
        collect(tmp_path / "cells", tmp_path / "bench")
    assert len(collect(tmp_path / "cells", tmp_path / "bench", allow_mixed_config=True)) == 4


def test_errors_name_file_and_key(tmp_path, table4_cells):
    cells, bench = tmp_path / "cells", tmp_path / "bench"
    cell_dir = write_fake_cell(cells, bench, table4_cells[0], 60.0)
    metrics = json.loads((cell_dir / "metrics.json").read_text())
    del metrics["fb_iou"]
    (cell_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(CollectError, match=rf"{cell_dir / 'metrics.json'}: missing key\(s\) \['fb_iou'\]"):
        collect(cells, bench)
    metrics["fb_iou"], metrics["cell_id"] = 1.0, cell_id(table4_cells[1])
    (cell_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(CollectError, match=r"cell_id is '.*fold1/seed321' but the file sits in '.*fold0/seed321'"):
        collect(cells, bench)
    metrics["cell_id"], metrics["class_iou"]["3"] = cell_id(table4_cells[0]), None  # absent class (skip mode)
    (cell_dir / "metrics.json").write_text(json.dumps(metrics))
    assert np.isnan(collect(cells, bench).loc[0, "class_iou_3"])
    with pytest.raises(CollectError, match=r"fold2/seed321/metrics.json: metrics file not found"):
        collect(cells, bench, cells=[cell_id(table4_cells[2])])
    (bench / "train" / f"{cell_id(table4_cells[0])}.tsv").write_text("h:m:s\n1:00:00\n")
    metrics["cell_id"] = cell_id(table4_cells[0])
    (cell_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(CollectError, match=r"fold0/seed321.tsv: benchmark file has no 's' column"):
        collect(cells, bench)


def test_cli_writes_atomically_and_reads_back(tmp_path, table4_cells):
    write_fake_cells(tmp_path / "cells", tmp_path / "bench", table4_cells, _miou)
    out = tmp_path / "results" / "results.csv"
    chosen = [cell_id(c) for c in table4_cells[:2]]
    assert main(["collect", "--cells-root", str(tmp_path / "cells"), "--benchmarks", str(tmp_path / "bench"),
                 "--out", str(out), "--cells", *chosen]) == 0
    back = read_results(out)
    assert back["cell_id"].tolist() == chosen and back["shot"].tolist() == [1, 1]
    assert [p.name for p in out.parent.iterdir()] == ["results.csv"]  # no temp file left behind
    # a failing write leaves the previous file intact and no temp file
    class Boom(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_results(Boom(back), out)
    assert read_results(out)["cell_id"].tolist() == chosen
    assert [p.name for p in out.parent.iterdir()] == ["results.csv"]


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    (tmp_path / "cells" / "x").mkdir(parents=True)
    code = main(["collect", "--cells-root", str(tmp_path / "cells"), "--benchmarks", str(tmp_path / "b"),
                 "--out", str(tmp_path / "r.csv"),
                 "--cells", "pascal/resnet50/baseline/dagger/svf/svf-code/1shot/fold0/seed321"])
    assert code == 11  # results
    err = capsys.readouterr().err
    assert err.startswith("svf collect: results error: ") and "metrics file not found" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r.csv").exists()


def test_library_versions_reach_results_csv(tmp_path, table4_cells):
    cell_dir = write_fake_cell(tmp_path / "cells", tmp_path / "bench", table4_cells[0], 60.0)
    write_fake_cell(tmp_path / "cells", tmp_path / "bench", table4_cells[1], 61.0)  # an older result: no versions
    metrics = json.loads((cell_dir / "metrics.json").read_text())
    metrics["versions"] = {"python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "numpy": "2.4.6",
                           "cuda": "13.0", "cudnn": 92400, "gpu": "NVIDIA H200"}
    (cell_dir / "metrics.json").write_text(json.dumps(metrics))
    results = collect(tmp_path / "cells", tmp_path / "bench").set_index("cell_id")
    new, old = results.loc[cell_id(table4_cells[0])], results.loc[cell_id(table4_cells[1])]
    assert (new["torch_version"], new["cuda_version"], new["gpu_name"]) == ("2.14.1", "13.0", "NVIDIA H200")
    assert pd.isna(old["torch_version"]) and pd.isna(old["gpu_name"])


def test_fake_cell_follows_the_metrics_contract(tmp_path):
    from svf.report.collect import METRICS_KEYS, read_metrics

    cell = dict(dataset="pascal", backbone="resnet50", method="baseline", setting="dagger", policy="svf",
                recipe="svf-code", shot=1, fold=2, seed=321)
    cell_dir = write_fake_cell(tmp_path / "cells", tmp_path / "bench", cell, 60.0)
    metrics = read_metrics(cell_dir / "metrics.json", tmp_path / "cells")
    assert set(METRICS_KEYS) <= set(metrics)
    assert sorted(metrics["class_iou"], key=int) == ["11", "12", "13", "14", "15"]
    sv = json.loads((cell_dir / "singular_values.json").read_text())
    assert set(sv) == {"before", "after"} and set(sv["before"]) == set(SV_LAYERS)
    assert (tmp_path / "bench" / "train" / f"{cell_id(cell)}.tsv").read_text().startswith("s\th:m:s")


def test_an_imported_cell_carries_the_bundles_recorded_miou(tmp_path, table4_cells):
    write_fake_cells(tmp_path / "cells", None, table4_cells, _miou)
    imported = tmp_path / "cells" / cell_id(table4_cells[0])
    (imported / "recorded_metrics.json").write_text(json.dumps({"miou": 12.5}))
    results = collect(tmp_path / "cells", tmp_path / "bench").set_index("cell_id")
    assert results.loc[cell_id(table4_cells[0]), "recorded_miou"] == 12.5
    assert results["recorded_miou"].isna().sum() == len(table4_cells) - 1
    (imported / "recorded_metrics.json").write_text("{}")
    with pytest.raises(CollectError, match="recorded_metrics.json: missing key 'miou'"):
        collect(tmp_path / "cells", tmp_path / "bench")
