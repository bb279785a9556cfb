"""Results bundles (svf/bundle/): export and import round trip on fake finished cells, and every refusal (tampered
byte, escaping path, link, unknown file, truncated archive, differing spec, pickled object, clashing file)."""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from fakes import TABLES_YAML, write_fake_trained_cell
from svf.bundle.export import export_bundle
from svf.bundle.manifest import (MANIFEST, BundleError, SpecMismatchError, plan_import, read_manifest,
                                 spec_differences)
from svf.bundle.verify import import_bundle, verify_bundle
from svf.cli import main as svf_main
from svf.pipeline.cells import Cell, cell_id
from svf.pipeline.spec_types import CellSpec
from svf.pipeline.specs import cell_spec, load_config
from svf.pipeline.tables import config_cells, load_tables

ROOT = Path(__file__).resolve().parents[2]
TABLE4 = {"tables": {"file": str(TABLES_YAML), "build": ["table4"], "folds": [0]}}


def make_config(tmp: Path, name: str, **overlay) -> dict:
    """The paper config (validated as Snakemake does) with its outputs under ``tmp/name``, restricted to Table 4's
    fold 0 (4 cells)."""
    roots = {key: str(tmp / name / key) for key in ("results", "resources", "logs", "benchmarks", "figures")}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"pathvars": roots, **TABLE4, **overlay}))
    return load_config([str(ROOT / "config" / "config.yaml"), str(path)])


def table4_cells(config: dict) -> list[dict]:
    return config_cells(config, load_tables(config["tables"]["file"]), ["table4"])


def finish_cells(config: dict, cells=None) -> list[dict]:
    """Every (or the given) Table 4 cell finished as rules train and evaluate leave it."""
    cells = table4_cells(config) if cells is None else cells
    root = Path(config["pathvars"]["results"]) / "cells"
    for i, cell in enumerate(cells):
        write_fake_trained_cell(root, cell, 40.0 + i, cell_spec(config, Cell.from_mapping(cell)))
    return cells


@pytest.fixture
def exported(tmp_path):
    """A .tar bundle of Table 4's four finished cells, and a fresh config to import it into."""
    source = make_config(tmp_path, "source")
    cells = finish_cells(source)
    archive = tmp_path / "bundle.tar"
    manifest = export_bundle(source, archive, log=lambda line: None)
    return {"source": source, "cells": cells, "archive": archive, "manifest": manifest,
            "target": make_config(tmp_path, "target")}


def files_under(config: dict) -> list[Path]:
    results = Path(config["pathvars"]["results"])
    return sorted(p for p in results.rglob("*") if p.is_file()) if results.exists() else []


def rewrite_tar(source: Path, dest: Path, change) -> None:
    """Copy an uncompressed bundle member by member, ``change(name, data) -> [(TarInfo, data), ...]`` deciding."""
    with tarfile.open(source) as old, tarfile.open(dest, "w") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()
            for info, content in change(member.name, data):
                new.addfile(info, io.BytesIO(content) if content is not None else None)


def file_info(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


# --- round trip ---------------------------------------------------------------------------------------------------

def test_round_trip_places_training_outputs_and_recorded_metrics(exported, capsys):
    source, target, archive = exported["source"], exported["target"], exported["archive"]
    manifest = read_manifest(archive)
    assert manifest["totals"]["cells"] == 4 and len(manifest["files"]) == 4 * 5
    assert sorted(manifest["totals"]["by_kind"]) == ["bn", "frozen", "svf", "svf-bn"]
    assert manifest["totals"]["by_table"]["table4"]["cells"] == 4
    report = import_bundle(archive, target)
    assert report["sha256"] == exported["manifest"]["sha256"] and len(report["plan"].cells) == 4
    for cell in exported["cells"]:
        cid = cell_id(cell)
        here, there = (Path(c["pathvars"]["results"]) / "cells" / cid for c in (source, target))
        for name in ("model.pt", "train_log.csv", "singular_values.json", "train_summary.json"):
            assert (there / name).read_bytes() == (here / name).read_bytes()
        assert (there / "recorded_metrics.json").read_bytes() == (here / "metrics.json").read_bytes()
        assert not (there / "metrics.json").exists()  # rule evaluate writes it here
    leftovers = [p for p in Path(target["pathvars"]["results"]).iterdir() if p.name.startswith(".bundle-import")]
    assert leftovers == []


def test_export_leaves_out_unfinished_cells_and_prints_sizes_per_table(tmp_path, capsys):
    source = make_config(tmp_path, "source")
    cells = table4_cells(source)
    finish_cells(source, cells[:3])
    manifest = export_bundle(source, tmp_path / "bundle.tar.gz")
    out = capsys.readouterr().out
    assert manifest["totals"]["cells"] == 3 and manifest["unfinished_cells"] == [cell_id(cells[3])]
    assert "table4: 3 cell(s)" in out and "kind frozen: 1 cell(s)" in out and "sha256" in out
    assert verify_bundle(tmp_path / "bundle.tar.gz", log=lambda line: None)["sha256"] == manifest["sha256"]


def test_export_refuses_a_cell_trained_under_another_config(tmp_path):
    source = make_config(tmp_path, "source")
    cell = finish_cells(source, table4_cells(source)[:1])[0]
    cell_dir = Path(source["pathvars"]["results"]) / "cells" / cell_id(cell)
    summary = json.loads((cell_dir / "train_summary.json").read_text())
    del summary["spec"]  # a cell trained before summaries held their spec: only the config hash can vouch
    (cell_dir / "train_summary.json").write_text(json.dumps(summary))
    with pytest.raises(BundleError, match="trained under config hash 'cafe00000000'"):
        export_bundle(source, tmp_path / "bundle.tar", log=lambda line: None)


def test_plan_lists_cells_the_bundle_lacks_and_cells_outside_the_config(exported, tmp_path):
    target = make_config(tmp_path, "wider", tables={**TABLE4["tables"], "folds": [0, 1]})
    plan = plan_import(read_manifest(exported["archive"]), target, load_tables(target["tables"]["file"]),
                       exported["archive"])
    bundled = {cell_id(c) for c in exported["cells"]}
    assert {cell_id(c) for c in plan.cells} == bundled and plan.not_in_config == []
    fold1 = {cell_id(c) for c in table4_cells(target) if c["fold"] == 1}
    assert len(fold1) == 4 and fold1 <= set(plan.not_in_bundle) and not bundled & set(plan.not_in_bundle)
    assert len(plan.outputs()) == 4 * 5 and all(p.startswith("<results>/cells/") for p in plan.outputs())


def test_the_cli_exports_imports_and_verifies(exported, tmp_path, capsys):
    overlay = tmp_path / "target.yaml"
    args = ["--configfile", str(ROOT / "config" / "config.yaml"), str(overlay)]
    assert svf_main(["bundle", "verify", str(exported["archive"])]) == 0
    assert svf_main(["bundle", "import", str(exported["archive"]), *args]) == 0
    assert "results_from" in capsys.readouterr().out
    assert svf_main(["bundle", "export", str(tmp_path / "again.tar.gz"), *args]) == 1  # nothing evaluated there
    assert "no finished cell" in capsys.readouterr().err


# --- refusals -----------------------------------------------------------------------------------------------------

def test_a_tampered_byte_is_refused_naming_the_file(exported, tmp_path):
    raw = bytearray(exported["archive"].read_bytes())
    marker = b'"miou": 41.0'  # the second cell's metrics.json (the manifest, first, quotes it too)
    at = raw.rindex(marker) + len(marker) - 1
    raw[at] = ord("7")
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"checksum mismatch for 'cells/.*/metrics\.json'"):
        import_bundle(tampered, exported["target"])
    assert files_under(exported["target"]) == []


def test_a_tampered_compressed_archive_is_refused(tmp_path):
    source = make_config(tmp_path, "source")
    finish_cells(source)
    archive = tmp_path / "bundle.tar.gz"
    export_bundle(source, archive, log=lambda line: None)
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.tar.gz").write_bytes(bytes(raw))
    target = make_config(tmp_path, "target")
    with pytest.raises(BundleError, match="refused"):
        import_bundle(tmp_path / "bad.tar.gz", target)
    assert files_under(target) == []


@pytest.mark.parametrize("name", ["../evil.json", "/tmp/evil.json", "cells/../../evil.json", "cells//x.json"])
def test_a_path_escaping_the_target_folder_is_refused(exported, tmp_path, name):
    bad = tmp_path / "escape.tar"
    rewrite_tar(exported["archive"], bad, lambda member, data: [(file_info(member, data), data)] + (
        [(file_info(name, b"{}"), b"{}")] if member == MANIFEST else []))
    with pytest.raises(BundleError, match="escapes the target folder"):
        import_bundle(bad, exported["target"])
    assert files_under(exported["target"]) == [] and not (tmp_path / "evil.json").exists()


def test_a_manifest_naming_an_escaping_path_is_refused(exported, tmp_path):
    def change(member, data):
        if member == MANIFEST:
            manifest = json.loads(data)
            manifest["files"]["../evil.json"] = next(iter(manifest["files"].values()))
            data = json.dumps(manifest).encode()
        return [(file_info(member, data), data)]

    bad = tmp_path / "manifest.tar"
    rewrite_tar(exported["archive"], bad, change)
    with pytest.raises(BundleError, match=r"'\.\./evil\.json' escapes the target folder"):
        read_manifest(bad)


def test_a_link_in_place_of_a_file_is_refused(exported, tmp_path):
    def change(member, data):
        if member.endswith("model.pt"):
            link = tarfile.TarInfo(member)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            return [(link, None)]
        return [(file_info(member, data), data)]

    bad = tmp_path / "link.tar"
    rewrite_tar(exported["archive"], bad, change)
    with pytest.raises(BundleError, match=r"model\.pt' is a symbolic link"):
        import_bundle(bad, exported["target"])


def test_an_unknown_file_is_refused_naming_it(exported, tmp_path):
    extra = f"cells/{cell_id(exported['cells'][0])}/notes.json"
    bad = tmp_path / "unknown.tar"
    rewrite_tar(exported["archive"], bad, lambda member, data: [(file_info(member, data), data)] + (
        [(file_info(extra, b"{}"), b"{}")] if member.endswith("seed321/metrics.json") else []))
    with pytest.raises(BundleError, match=f"{extra}' is not in the manifest"):
        import_bundle(bad, exported["target"])
    assert files_under(exported["target"]) == []


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_truncated_archive_is_refused(tmp_path, suffix):
    source = make_config(tmp_path, "source")
    finish_cells(source)
    archive = tmp_path / f"bundle{suffix}"
    export_bundle(source, archive, log=lambda line: None)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    target = make_config(tmp_path, "target")
    with pytest.raises(BundleError, match="truncated"):
        import_bundle(cut, target)
    assert files_under(target) == []


def test_a_differing_spec_is_refused_naming_the_keys(exported, tmp_path):
    target = make_config(tmp_path, "other", recipe_overrides={"epochs": 7},
                         evaluation={"episodes": 500})
    with pytest.raises(SpecMismatchError) as error:
        import_bundle(exported["archive"], target)
    message = str(error.value)
    assert "4 of 4" in message and cell_id(exported["cells"][0]) in message
    assert "recipe.epochs (bundle 200, here 7)" in message and "evaluation.episodes (bundle null, here 500)" in message
    assert files_under(target) == []


def test_spec_differences_name_nested_and_absent_keys():
    bundled = {"recipe": {"epochs": 25, "crop": 64}, "seed": 1, "model": {"bins": [1, 2]}}
    here = {"recipe": {"epochs": 2, "crop": 64, "new": True}, "seed": 1, "model": {"bins": [1, 3]}}
    assert spec_differences(bundled, here) == ["model.bins (bundle [1, 2], here [1, 3])",
                                               "recipe.epochs (bundle 25, here 2)",
                                               "recipe.new (bundle: absent, here true)"]
    assert spec_differences(here, here) == []


def test_a_model_file_holding_pickled_objects_is_refused(tmp_path):
    source = make_config(tmp_path, "source")
    cells = finish_cells(source)
    model = Path(source["pathvars"]["results"]) / "cells" / cell_id(cells[1]) / "model.pt"
    saved = torch.load(model, weights_only=True)
    torch.save({**saved, "extra": argparse.Namespace(code="runs on load")}, model)
    export_bundle(source, tmp_path / "bundle.tar", log=lambda line: None)
    target = make_config(tmp_path, "target")
    with pytest.raises(BundleError, match="model.pt' is not readable as tensors.*pickled objects"):
        import_bundle(tmp_path / "bundle.tar", target)
    assert files_under(target) == []


def test_an_existing_file_with_other_contents_is_kept_unless_overwrite(exported):
    target = exported["target"]
    cid = cell_id(exported["cells"][2])
    mine = Path(target["pathvars"]["results"]) / "cells" / cid / "train_log.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("epoch\n0\n")
    with pytest.raises(BundleError, match="already exist with other contents"):
        import_bundle(exported["archive"], target, log=lambda line: None)
    assert files_under(target) == [mine]
    import_bundle(exported["archive"], target, overwrite=True, log=lambda line: None)
    assert mine.read_text().startswith("epoch,step,loss")


# --- size at paper scale ------------------------------------------------------------------------------------------

def test_an_s_only_svf_cell_at_paper_size_bundles_its_s_in_under_100_kib(tmp_path, capsys):
    """Table 7's S row at paper size (ResNet-50 baseline†, untrained: trained tensors have the same shapes; no data
    needed). The backbone's share of the cell's entry is its 12,544 singular values, under 100 KiB; the entry as a
    whole is dominated by the baseline head (4.9 M parameters, trained in every cell), which no bundle can leave out
    if the cell is to be re-evaluated. The breakdown is printed (docs/bundles.md)."""
    from svf.decompose import singular_values
    from svf.engine.tasks.build import build_cell_model, trained_state
    from svf.files import torch_save, write_json

    config = make_config(tmp_path, "paper", tables={"file": str(TABLES_YAML), "build": ["table7"], "folds": [0]})
    cell = next(c for c in config_cells(config, load_tables(TABLES_YAML), ["table7"])
                if c["policy"] == "svf" and c["shot"] == 1)
    spec = cell_spec(config, Cell.from_mapping(cell))
    cell_dir = write_fake_trained_cell(Path(config["pathvars"]["results"]) / "cells", cell, 50.0, spec)
    model, policy = build_cell_model(CellSpec.from_json(spec), None, None)
    state = trained_state(model, policy)
    torch_save(cell_dir / "model.pt", {"cell_id": cell_id(cell), "cell": cell, "policy": "svf", "epoch": 1,
                                       "state": state})
    values = {k: v.tolist() for k, v in singular_values(model).items()}
    write_json(cell_dir / "singular_values.json", {"before": values, "after": values})
    manifest = export_bundle(config, tmp_path / "paper.tar.gz", log=lambda line: None)

    backbone = {k: v for k, v in state.items() if k.startswith("layer")}
    assert backbone and all(k.endswith("vector_S") for k in backbone)  # no U, V or conv weight travels
    assert sum(v.numel() for v in backbone.values()) == 12_544
    buffer = io.BytesIO()
    torch.save(backbone, buffer)
    s_bytes = buffer.tell()
    assert s_bytes < 100 * 1024
    head = {k: v for k, v in state.items() if not k.startswith("layer")}
    buffer = io.BytesIO()
    torch.save(head, buffer)
    head_bytes = buffer.tell()
    sizes = {name.rsplit("/", 1)[1]: entry["bytes"] for name, entry in manifest["files"].items()}
    assert sizes["model.pt"] <= s_bytes + head_bytes + 16 * 1024  # the trained tensors and nothing else
    assert manifest["totals"]["by_kind"]["svf"]["bytes"] == sum(sizes.values())
    with capsys.disabled():
        print(f"\npaper-size S-only cell entry: {sum(sizes.values()) / 1024:.0f} KiB = S {s_bytes / 1024:.1f} KiB + "
              f"head {head_bytes / 1024:.0f} KiB (model.pt {sizes['model.pt'] / 1024:.0f} KiB) + singular_values.json "
              f"{sizes['singular_values.json'] / 1024:.0f} KiB + metrics, log, summary; archive "
              f"{manifest['archive_bytes'] / 1024:.0f} KiB")


def test_planning_an_import_is_light(exported):
    """The Snakefile reads the manifest and plans the import while it builds the DAG: no torch, pandas or matplotlib
    (and only the archive's first member)."""
    import subprocess
    import sys

    code = ("import json, sys; from svf.bundle.manifest import plan_import, read_manifest; "
            "from svf.pipeline.tables import load_tables; config = json.loads(sys.argv[2]); "
            "tables = load_tables(config['tables']['file']); "
            "plan = plan_import(read_manifest(sys.argv[1]), config, tables, sys.argv[1]); "
            "assert len(plan.cells) == 4, plan; "
            "bad = [m for m in ('pandas', 'torch', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(exported["archive"]), json.dumps(exported["target"])], check=True,
                   cwd=ROOT)
