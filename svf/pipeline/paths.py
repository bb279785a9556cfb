"""Every path the workflow reads or writes, as templates over Snakemake's path variables and wildcards.

``<resources>`` (data, splits, weights, base learners, checkpoints), ``<results>`` (cells, tables), ``<figures>``,
``<logs>`` and ``<benchmarks>`` are the config's ``pathvars``; Snakemake expands them in a rule's input, output, log
and benchmark (``expanded``/``pv`` in common.smk in its parameters). The ``{dataset}``, ``{backbone}``, ``{fold}``,
``{table}``, ``{artifact}`` fields are the rules' wildcards, so a template is a rule's pattern as it stands and a
concrete path after ``.format(...)``.

The file names inside a cell directory (``MODEL``, ``METRICS``, ...) are the contract between training, evaluation
and the reports (docs/architecture.md).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..data.datasets import DATASET_FILE, SPLITS_SUMMARY
from ..data.download import GROUPS, weights_artifact
from .cells import CELL_ID_FORMAT, cell_id

# Files of a cell directory.
MODEL = "model.pt"
TRAIN_LOG = "train_log.csv"
SINGULAR_VALUES = "singular_values.json"
TRAIN_SUMMARY = "train_summary.json"
METRICS = "metrics.json"

# Roots.
RESULTS_DIR = "<results>"
BENCHMARKS_DIR = "<benchmarks>"
CELLS_ROOT = "<results>/cells"
TABLES_DIR = "<results>/tables"
STUDY_DIR = "<results>/study"
FIGURES_DIR = "<figures>"
DOWNLOADS_DIR = "<resources>/downloads"

# Data: downloads or the synthetic stand-in -> a prepared dataset -> its fold splits.
DOWNLOAD_MARKER = DOWNLOADS_DIR + "/{artifact}.done"  # touched once `svf download` has fetched and checked it
RAW_DIR = "<resources>/raw/{dataset}"  # the synthetic stand-in, in the real archives' layout (`svf synth`)
RAW_MARKER = RAW_DIR + "/.complete"
DATASET_ROOT = "<resources>/data/{dataset}"  # PFENet's data-root layout (`svf prepare`)
DATASET_JSON = f"{DATASET_ROOT}/{DATASET_FILE}"  # written last: the dataset is complete
SPLITS_DIR = "<resources>/splits/{dataset}"  # fold lists and support pools of both settings (`svf splits`)
SPLITS_JSON = f"{SPLITS_DIR}/{SPLITS_SUMMARY}"  # written last, with the check against the published lists

# Weights: ImageNet (downloaded) or the demo's stand-in pretraining; BAM's stage-1 PSPNet per fold.
WEIGHTS_FILE = "<resources>/weights/{backbone}.pth"
BASE_LEARNER_DIR = "<resources>/base_learners/{dataset}/{backbone}/fold{fold}"
# Checkpoints live outside the outputs: Snakemake's clean-up of a killed job keeps them and the rerun resumes.
BASE_LEARNER_CHECKPOINTS = "<resources>/checkpoints/base_learners/{dataset}/{backbone}/fold{fold}"
CELL_CHECKPOINTS = "<resources>/checkpoints/cells/" + CELL_ID_FORMAT

# Reports.
CELL_DIR = f"{CELLS_ROOT}/{CELL_ID_FORMAT}"
RESULTS_CSV = f"{RESULTS_DIR}/results.csv"
TABLE_FILES = tuple(f"{TABLES_DIR}/{{table}}.{ext}" for ext in ("csv", "md", "tex"))  # beside the paper's numbers
TABLE_CELLS = TABLES_DIR + "/{table}_cells.csv"  # the collected cells of one table, which `svf tables` renders
SUMMARY_MD = f"{TABLES_DIR}/summary.md"
COMPARISON_CSV = f"{TABLES_DIR}/comparison.csv"
CURVES_FILE = FIGURES_DIR + "/curves_{table}.png"
FIGURE4_FILE = FIGURES_DIR + "/figure4_fold{fold}.png"
FIGURE6_FILES = (f"{FIGURES_DIR}/figure6_singular_values.png", f"{FIGURES_DIR}/figure6_singular_values.pdf")
FIGURE6_DATA = f"{FIGURES_DIR}/figure6_singular_values.csv"
OVERVIEW_PNG = f"{FIGURES_DIR}/overview.png"
STUDY_FIGURE = FIGURES_DIR + "/study_{table}.png"
ESTIMATE_CSV, ESTIMATE_MD = f"{RESULTS_DIR}/estimate.csv", f"{RESULTS_DIR}/estimate.md"  # svf estimate writes both


def cell_file(cell: Mapping[str, Any], name: str) -> str:
    """``name`` (MODEL, TRAIN_LOG, SINGULAR_VALUES, TRAIN_SUMMARY, METRICS) in the cell's directory."""
    return f"{CELLS_ROOT}/{cell_id(cell)}/{name}"


def benchmark_name(step: str, cell: Mapping[str, Any] | str) -> str:
    """Where Snakemake times a cell's ``train`` or ``evaluate`` job, under <benchmarks> (svf collect reads it)."""
    return f"{step}/{cell if isinstance(cell, str) else cell_id(cell)}.tsv"


def benchmark_file(step: str, cell: Mapping[str, Any] | str) -> str:
    return f"{BENCHMARKS_DIR}/{benchmark_name(step, cell)}"


def table_files(name: str) -> list[str]:
    return [template.format(table=name) for template in TABLE_FILES]


def raw_downloads(dataset: str) -> list[str]:
    """The download markers of a real dataset's archives (``svf download <dataset>`` fetches the same group)."""
    return [DOWNLOAD_MARKER.format(artifact=artifact) for artifact in GROUPS[dataset]]


def imagenet_artifact(config: Mapping[str, Any], backbone: str) -> str:
    """The download holding a backbone's ImageNet weights under the config's ``weights.resnet50``."""
    return weights_artifact(backbone, config["weights"]["resnet50"])


def inputs_of_cell(cell: Mapping[str, Any]) -> dict[str, str]:
    """Everything a cell's training (and evaluation) reads besides its own outputs."""
    inputs = {
        "dataset": DATASET_JSON.format(**cell),
        "splits": SPLITS_JSON.format(**cell),
        "weights": WEIGHTS_FILE.format(**cell),
    }
    if cell["method"] == "bam":
        inputs["base_learner"] = f"{BASE_LEARNER_DIR.format(**cell)}/{MODEL}"
    return inputs


#: BAM's folder name of each backbone in its initmodel/PSPNet layout.
PUBLISHED_BACKBONE_NAMES = {"vgg16": "vgg", "resnet50": "resnet50"}


def published_base_learner(root: str, dataset: str, backbone: str, fold: int | str) -> str:
    """BAM's released stage-1 checkpoint in its initmodel layout: <root>/<dataset>/split<k>/<vgg|resnet50>/best.pth
    (a backbone that is not one of ours, e.g. a wildcard, is used as the folder name)."""
    name = PUBLISHED_BACKBONE_NAMES.get(backbone, backbone)
    return f"{root.rstrip('/')}/{dataset}/split{fold}/{name}/best.pth"
