# All Python helpers of the workflow: config validation, the cells each table needs, paths and rule parameters.
# Everything here runs at DAG-building time, so it only imports light modules (no torch).
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from svf import __version__ as SVF_VERSION
from svf import tables_config
from svf.engine.spec import Cell, base_learner_spec, canonical_json, cell_spec, config_hash, pretrain_spec
from svf.policy import is_canonical


validate(config, schema="../schemas/config.schema.yaml")

TABLES = tables_config.load_tables(config["tables"]["file"])
CONFIG_HASH = config_hash(config)
# Rules call the `svf` CLI of the interpreter that runs Snakemake (no reliance on an activated venv or PATH).
SVF = f"{shlex.quote(sys.executable)} -m svf"
TABLE_NAMES = tuple(TABLES["tables"])
CELL = tables_config.CELL_ID_FORMAT
# Training seeds: every cell once per seed (default: the config's seed, the paper's 321).
SEEDS = config["tables"].get("seeds") or [config["seed"]]


def _restrict(cells):
    """Apply the config's optional fold/shot restriction (quick runs, tests)."""
    folds, shots = config["tables"].get("folds"), config["tables"].get("shots")
    return [
        c
        for c in cells
        if (folds is None or c["fold"] in folds) and (shots is None or c["shot"] in shots)
    ]


def cells_for(names):
    """Cells (dicts) of the named tables, deduplicated: a cell shared by several tables trains once."""
    unknown = [n for n in names if n not in TABLE_NAMES]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; {config['tables']['file']} defines {list(TABLE_NAMES)}")
    return _restrict(tables_config.cells_of(TABLES, names, seeds=SEEDS))


def _check_cells(cells):
    """Fail at DAG-building time, before any job starts, on names no rule can run."""
    for cell in cells:
        if not is_canonical(cell["policy"]):
            raise ValueError(f"cell {tables_config.cell_id(cell)}: policy {cell['policy']!r} is not a canonical "
                             f"policy name (see svf/policy.py)")
        if cell["recipe"] not in config["recipes"]:
            raise ValueError(
                f"cell {tables_config.cell_id(cell)} uses recipe {cell['recipe']!r}; "
                f"config recipes are {sorted(config['recipes'])}"
            )


# ---- warm start (demo): one server imports torch once and forks every `svf` job (see svf/warm.py) ----------------
WARM = {}


def start_warm_server():
    if config.get("warm_start") and workflow.local_exec:
        import tempfile

        from svf import warm

        path = os.path.join(tempfile.mkdtemp(prefix="svf-warm-"), "socket")
        WARM["pid"] = warm.start(path)
        os.environ[warm.ENV_SOCKET] = path  # inherited by every local job's shell


def stop_warm_server():
    if "pid" in WARM:
        from svf import warm

        warm.stop(WARM.pop("pid"))


ALL_CELLS = cells_for(config["tables"]["build"])
_check_cells(cells_for(TABLE_NAMES))

wildcard_constraints:
    dataset="pascal|coco",
    backbone="resnet50|vgg16",
    method="baseline|pfenet|bam",
    setting="dagger|original",
    policy=r"[a-z0-9]+(-[a-zA-Z0-9]+)*",
    recipe="|".join(sorted(config["recipes"])),
    shot=r"[1-9][0-9]*",
    fold=r"[0-3]",
    seed=r"[0-9]+",
    table="|".join(TABLE_NAMES),
    artifact=r"[a-z0-9_]+",


# ---- paths ---

def pv(path):
    """Expand path variables (<results>, <resources>, ...) in strings that are not rule inputs/outputs."""
    return workflow.pathvars.apply(path)


def mirror_arg(wildcards):
    mirror = config["data"]["mirror"]
    return f"--mirror {shlex.quote(mirror)}" if mirror else ""



def cell_dir(cell):
    return f"<results>/cells/{tables_config.cell_id(cell)}"


def metrics_of(cells):
    return [f"{cell_dir(c)}/metrics.json" for c in cells]


def dataset_root(dataset):
    return f"<resources>/data/{dataset}"


def splits_dir(dataset):
    return f"<resources>/splits/{dataset}"


def weights_file(backbone):
    return f"<resources>/weights/{backbone}.pth"


def published_base_learner(dataset, backbone, fold):
    """BAM's released stage-1 checkpoint in its initmodel layout: PSPNet/{dataset}/split{k}/{vgg|resnet50}/best.pth."""
    root = config["weights"]["bam_base_learner_dir"]
    if not root:
        raise ValueError("weights.bam_base_learner is 'published' but weights.bam_base_learner_dir is not set")
    name = "vgg" if backbone == "vgg16" else backbone
    return str(Path(root) / dataset / f"split{fold}" / name / "best.pth")


def base_learner_file(dataset, backbone, fold):
    return f"<resources>/base_learners/{dataset}/{backbone}/fold{fold}/model.pt"


def table_files(name):
    return [f"<results>/tables/{name}.{ext}" for ext in ("csv", "md", "tex")]


def table_outputs(name):
    return table_files(name) + [f"<figures>/curves_{name}.png"]


FIGURE6_FILES = ["<figures>/figure6_singular_values.png", "<figures>/figure6_singular_values.pdf"]


def figure6_outputs():
    return FIGURE6_FILES


def figure_cells():
    """The 1-shot cells of the configured Table 1 row (R50 baseline + SVF by default) feeding Figures 4 and 6, one per
    fold (the first training seed)."""
    row_id = config["figures"]["figure6_row"]
    cells = [
        c
        for c in _restrict(tables_config.cells_of(TABLES, ["table1"], row_ids=[row_id], seeds=SEEDS[:1]))
        if c["shot"] == 1
    ]
    if not cells:
        raise ValueError(f"figures.figure6_row {row_id!r} has no 1-shot cell in table1 (after fold/shot filters)")
    return cells


def figure4_outputs():
    return [f"<figures>/figure4_fold{c['fold']}.png" for c in figure_cells()]


def all_outputs():
    outputs = ["<results>/results.csv", "<results>/tables/summary.md", "<figures>/overview.png"]
    for name in config["tables"]["build"]:
        outputs += table_outputs(name)
    return outputs + figure6_outputs() + figure4_outputs()


# ---- rule parameters ---------------------------------------------------------------------------------------------


def _cell(wildcards):
    return Cell.from_mapping(dict(wildcards))


def cell_spec_json(wildcards):
    return canonical_json(cell_spec(config, _cell(wildcards)))


def base_spec_json(wildcards):
    return canonical_json(base_learner_spec(config, wildcards.dataset, wildcards.backbone, wildcards.fold))


def inputs_of_cell(cell):
    """Everything a cell's training (and evaluation) reads besides its own outputs."""
    inputs = {
        "dataset": f"{dataset_root(cell['dataset'])}/dataset.json",
        "splits": f"{splits_dir(cell['dataset'])}/splits_summary.json",
        "weights": weights_file(cell["backbone"]),
    }
    if cell["method"] == "bam":
        inputs["base_learner"] = base_learner_file(cell["dataset"], cell["backbone"], cell["fold"])
    return inputs


def cell_inputs(wildcards):
    return inputs_of_cell(dict(wildcards))


def figure_cell(fold):
    return next(c for c in figure_cells() if c["fold"] == int(fold))


def figure4_inputs(wildcards):
    cell = figure_cell(wildcards.fold)
    directory = cell_dir(cell)
    return {
        **inputs_of_cell(cell),
        "model": f"{directory}/model.pt",
        "singular_values": f"{directory}/singular_values.json",
    }


def figure4_spec_json(wildcards):
    return canonical_json(cell_spec(config, Cell.from_mapping(figure_cell(wildcards.fold))))


def base_learner_arg(wildcards, input):
    return f"--base-learner {shlex.quote(input.base_learner)}" if "base_learner" in input.keys() else ""


def res(kind, key):
    return config.get("resources", {}).get(kind, {}).get(key)


# ---- data, tables and figures helpers ------------------------------------------------------------------------


def raw_inputs(wildcards):
    """What `svf prepare` reads for a dataset: downloaded archives or the synthetic raw dataset."""
    if config["data"]["source"] == "synthetic":
        return {"raw": f"<resources>/raw/{wildcards.dataset}/.complete"}
    return {"archives": [f"<resources>/downloads/{a}.done" for a in DOWNLOADS[wildcards.dataset]]}


DOWNLOADS = {
    "pascal": ["voc2012", "sbd", "sbd_train_noval"],
    "coco": ["coco_train2014", "coco_val2014", "coco_annotations2014"],
}


IMAGENET_RESNET50 = {"resnet50_v2": "resnet50_v2", "torchvision": "resnet50_torchvision"}


def cell_ids_arg(cells):
    return " ".join(shlex.quote(tables_config.cell_id(c)) for c in cells)


def table_filter_args():
    """Options shared by `svf tables` and `svf overview`: fold/shot restriction, tolerance, demo, mixing."""
    args = [f"--tolerance {config['tables']['tolerance']}", "--seeds " + " ".join(str(s) for s in SEEDS)]
    for key in ("folds", "shots"):
        if config["tables"].get(key):
            args.append(f"--{key} " + " ".join(str(v) for v in config["tables"][key]))
    if config.get("demo"):
        args.append("--demo")
    if config["tables"]["allow_mixed_config"]:
        args.append("--allow-mixed-config")
    return " ".join(args)
