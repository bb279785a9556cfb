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

from dataclasses import dataclass
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
#: What rule train writes: an imported cell (``results_from``) gets these from the bundle instead.
TRAIN_OUTPUTS = (MODEL, TRAIN_LOG, SINGULAR_VALUES, TRAIN_SUMMARY)
#: An imported cell's metrics.json as the bundle recorded it (metrics.json is then this machine's re-evaluation).
RECORDED_METRICS = "recorded_metrics.json"
#: The checkpoint of a run in its checkpoint directory (``CELL_CHECKPOINTS``, ``BASE_LEARNER_CHECKPOINTS``).
CHECKPOINT = "last.pt"

# Files of the reports: the templates below and the commands that write them by hand share these names.
RESULTS_NAME = "results.csv"
TABLE_FORMATS = ("csv", "md", "tex")  # each table beside the paper's numbers
SUMMARY_NAME, COMPARISON_NAME = "summary.md", "comparison.csv"
STUDY_MD, STUDY_CSV, STUDY_ROWS_CSV, STUDY_PROBE_CSV = "study.md", "study.csv", "study_rows.csv", "study_probe.csv"
STUDY_CLAIMS_PNG, STUDY_ROWS_PNG, STUDY_PROBE_PNG = "study_claims.png", "study_rows.png", "study_probe.png"
ESTIMATE_NAMES = ("estimate.csv", "estimate.md")  # `svf estimate --out DIR` writes both
#: The paper's numbers, beside which every table and the study print ours (a file of the repository).
PAPER_RESULTS = "config/paper_results.csv"

# Roots.
RESULTS_DIR = "<results>"
RESOURCES_DIR = "<resources>"
BENCHMARKS_DIR = "<benchmarks>"
CELLS_ROOT = "<results>/cells"
TABLES_DIR = "<results>/tables"
STUDY_DIR = "<results>/study"
FIGURES_DIR = "<figures>"
DOWNLOADS_DIR = "<resources>/downloads"

# Data: downloads or the synthetic stand-in -> a prepared dataset -> its fold splits; weights: ImageNet (downloaded)
# or the demo's stand-in pretraining; BAM's stage-1 PSPNet per fold. Everything that derives from the synthetic data or
# the stand-in pretraining lives under a *world* root: ``<resources>`` itself or, when every training seed draws its
# own synthetic world (``data.synthetic.worlds: per_seed``, the study), ``<resources>/world{seed}``.
DOWNLOAD_MARKER = DOWNLOADS_DIR + "/{artifact}.done"  # touched once `svf download` has fetched and checked it
SHARED_WORLD = "<resources>"
WORLD_PER_SEED = "<resources>/world{seed}"


@dataclass(frozen=True)
class ResourceLayout:
    """The templates of a world's resources; under ``WORLD_PER_SEED`` each one holds the ``{seed}`` wildcard, so the
    rules that make them run once per world."""

    root: str = SHARED_WORLD

    @property
    def log_prefix(self) -> str:
        """Prefix of the world's jobs' log and benchmark names (they must hold the same wildcards)."""
        return "" if self.root == SHARED_WORLD else "world{seed}/"

    @property
    def raw_dir(self) -> str:  # the synthetic stand-in, in the real archives' layout (`svf synth`)
        return f"{self.root}/raw/{{dataset}}"

    @property
    def raw_marker(self) -> str:
        return f"{self.raw_dir}/.complete"

    @property
    def dataset_root(self) -> str:  # PFENet's data-root layout (`svf prepare`)
        return f"{self.root}/data/{{dataset}}"

    @property
    def dataset_json(self) -> str:  # written last: the dataset is complete
        return f"{self.dataset_root}/{DATASET_FILE}"

    @property
    def splits_dir(self) -> str:  # fold lists and support pools of both settings (`svf splits`)
        return f"{self.root}/splits/{{dataset}}"

    @property
    def splits_json(self) -> str:  # written last, with the check against the published lists
        return f"{self.splits_dir}/{SPLITS_SUMMARY}"

    @property
    def weights_file(self) -> str:
        return f"{self.root}/weights/{{backbone}}.pth"

    @property
    def base_learner_dir(self) -> str:
        return f"{self.root}/base_learners/{{dataset}}/{{backbone}}/fold{{fold}}"

    @property
    def base_learner_checkpoints(self) -> str:  # outside the outputs, as the cells' checkpoints
        return f"{self.root}/checkpoints/base_learners/{{dataset}}/{{backbone}}/fold{{fold}}"

    def inputs_of_cell(self, cell: Mapping[str, Any]) -> dict[str, str]:
        inputs = {"dataset": self.dataset_json.format(**cell), "splits": self.splits_json.format(**cell),
                  "weights": self.weights_file.format(**cell)}
        if cell["method"] == "bam":
            inputs["base_learner"] = f"{self.base_learner_dir.format(**cell)}/{MODEL}"
        return inputs


def resource_layout(config: Mapping[str, Any]) -> ResourceLayout:
    """The config's layout: one world per training seed when ``data.synthetic.worlds`` is ``per_seed``."""
    per_seed = ((config.get("data") or {}).get("synthetic") or {}).get("worlds") == "per_seed"
    return ResourceLayout(WORLD_PER_SEED if per_seed else SHARED_WORLD)


SHARED = ResourceLayout()
RAW_DIR, RAW_MARKER = SHARED.raw_dir, SHARED.raw_marker
DATASET_ROOT, DATASET_JSON = SHARED.dataset_root, SHARED.dataset_json
SPLITS_DIR, SPLITS_JSON = SHARED.splits_dir, SHARED.splits_json
WEIGHTS_FILE = SHARED.weights_file
BASE_LEARNER_DIR, BASE_LEARNER_CHECKPOINTS = SHARED.base_learner_dir, SHARED.base_learner_checkpoints
# Checkpoints live outside the outputs: Snakemake's clean-up of a killed job keeps them and the rerun resumes.
CELL_CHECKPOINTS = "<resources>/checkpoints/cells/" + CELL_ID_FORMAT

# Reports.
CELL_DIR = f"{CELLS_ROOT}/{CELL_ID_FORMAT}"
RESULTS_CSV = f"{RESULTS_DIR}/{RESULTS_NAME}"
TABLE_FILES = tuple(f"{TABLES_DIR}/{{table}}.{ext}" for ext in TABLE_FORMATS)
TABLE_CELLS = TABLES_DIR + "/{table}_cells.csv"  # the collected cells of one table, which `svf tables` renders
SUMMARY_MD = f"{TABLES_DIR}/{SUMMARY_NAME}"
COMPARISON_CSV = f"{TABLES_DIR}/{COMPARISON_NAME}"
CURVES_FILE = FIGURES_DIR + "/curves_{table}.png"
FIGURE4_FILE = FIGURES_DIR + "/figure4_fold{fold}.png"
FIGURE6_FILES = (f"{FIGURES_DIR}/figure6_singular_values.png", f"{FIGURES_DIR}/figure6_singular_values.pdf")
FIGURE6_DATA = f"{FIGURES_DIR}/figure6_singular_values.csv"
OVERVIEW_PNG = f"{FIGURES_DIR}/overview.png"
# The study (docs/study.md): its cells collected, the verdicts, the rows, the probe of the paper's mechanism.
STUDY_CELLS = f"{STUDY_DIR}/cells.csv"
STUDY_FILES = tuple(f"{STUDY_DIR}/{name}" for name in (STUDY_MD, STUDY_CSV, STUDY_ROWS_CSV))
STUDY_FIGURES = tuple(f"{FIGURES_DIR}/{name}" for name in (STUDY_CLAIMS_PNG, STUDY_ROWS_PNG))
STUDY_PROBE_FIGURE = f"{FIGURES_DIR}/{STUDY_PROBE_PNG}"
STUDY_PROBE = f"{STUDY_DIR}/probe/{CELL_ID_FORMAT}.json"  # `svf probe` of one cell (before/after base training)
BUNDLE_FILE = f"{RESULTS_DIR}/bundle.tar.gz"  # `snakemake bundle`: every finished cell (svf bundle export)
ESTIMATE_CSV, ESTIMATE_MD = (f"{RESULTS_DIR}/{name}" for name in ESTIMATE_NAMES)


#: Snakemake's defaults of the path variables (the config's ``pathvars`` override them).
DEFAULT_PATHVARS = {"results": "results", "resources": "resources", "logs": "logs", "benchmarks": "benchmarks",
                    "figures": "figures"}


def expand_pathvars(template: str, config: Mapping[str, Any], **roots: str) -> str:
    """A template's ``<results>``, ``<resources>``, ... replaced as Snakemake would under ``config`` (for commands
    run by hand); ``roots`` (e.g. ``results="out"``) win over the config's ``pathvars``."""
    values = {**DEFAULT_PATHVARS, **(config.get("pathvars") or {}), **{k: v for k, v in roots.items() if v}}
    for name, value in values.items():
        template = template.replace(f"<{name}>", str(value))
    return template


def base_learner_file(dataset: str, backbone: str, fold: int | str, name: str = MODEL) -> str:
    """``name`` (MODEL, TRAIN_LOG) of BAM's stage-1 base learner of (dataset, backbone, fold)."""
    return f"{BASE_LEARNER_DIR.format(dataset=dataset, backbone=backbone, fold=fold)}/{name}"


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


def inputs_of_cell(cell: Mapping[str, Any], layout: "ResourceLayout | None" = None) -> dict[str, str]:
    """Everything a cell's training (and evaluation) reads besides its own outputs (``layout``: its world's)."""
    return (layout or SHARED).inputs_of_cell(cell)


#: BAM's folder name of each backbone in its initmodel/PSPNet layout.
PUBLISHED_BACKBONE_NAMES = {"vgg16": "vgg", "resnet50": "resnet50"}


def published_base_learner(root: str, dataset: str, backbone: str, fold: int | str) -> str:
    """BAM's released stage-1 checkpoint in its initmodel layout: <root>/<dataset>/split<k>/<vgg|resnet50>/best.pth
    (a backbone that is not one of ours, e.g. a wildcard, is used as the folder name)."""
    name = PUBLISHED_BACKBONE_NAMES.get(backbone, backbone)
    return f"{root.rstrip('/')}/{dataset}/split{fold}/{name}/best.pth"
