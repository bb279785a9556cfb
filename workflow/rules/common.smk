# All Python helpers of the workflow: config validation, the cells each table needs, paths and rule parameters.
# Everything here runs at DAG-building time, so it only imports light modules (no torch).
import atexit
import os
import shlex
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

from svf.errors import ConfigError, SvfError, describe
from svf.pipeline import checks, paths
from svf.pipeline.cells import BACKBONES, DATASETS, METHODS, SETTINGS, WILDCARDS, Cell, cell_id
from svf.pipeline.scheduler_fix import coalesce_scheduler_reevaluations
from svf.pipeline.specs import (
    base_learner_spec,
    canonical_json,
    cell_spec,
    config_hash,
    pretrain_spec,
    synthetic_looks,
)
from svf.pipeline.tables import cells_of, config_cells, load_tables, training_seeds
from svf.pipeline.tables import probe_cells as tables_probe_cells, study_cells as tables_study_cells
from svf.policy_names import POLICY_PATTERN


def fail(error):
    """End Snakemake with the error's paragraph and exit code, before any job (no traceback, no schema dump)."""
    print(describe(error).paragraph("workflow"), file=sys.stderr)
    sys.exit(describe(error).exit_code)


def profile_resources():
    """The raw values of the resources a profile or the command line sets, by where they are set."""
    settings = workflow.resource_settings
    values = {f"default-resources {k}": v.raw for k, v in (settings.default_resources or {}).items()}
    for rule_name, mapping in settings.overwrite_resources.items():
        values.update({f"set-resources {rule_name}:{k}": getattr(v, "raw", v) for k, v in mapping.items()})
    return values


# One pending scheduler wake-up instead of one more per finished job (svf/pipeline/scheduler_fix.py).
coalesce_scheduler_reevaluations()


try:
    CONFIG_FILES = [str(f) for f in workflow.configfiles]
    checks.check_config(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"), CONFIG_FILES)
    checks.check_synthetic_world(config, CONFIG_FILES)
    if workflow.is_main_process:  # jobs inside SLURM see the values the controller expanded
        checks.check_profile_variables(profile_resources(), " (workflow/profiles/slurm/profile.yaml, docs/cluster.md)")
    TABLES = load_tables(config["tables"]["file"])
    checks.check_table_names(config, TABLES["tables"], config["tables"]["file"], CONFIG_FILES)
    checks.check_recipes(cells_of(TABLES), config["recipes"], config["tables"]["file"])
except SvfError as error:
    fail(error)
validate(config, schema="../schemas/config.schema.yaml")  # passes now; fills in the schema's defaults

CONFIG_HASH = config_hash(config)
# Every rule runs in environment.yml's environment under `--sdm conda`; otherwise in the interpreter that runs
# Snakemake (no reliance on an activated venv or PATH).
CONDA_ENV = "../../environment.yml"
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
SVF = "python -m svf" if USE_CONDA else f"{shlex.quote(sys.executable)} -m svf"
# Rules call `svf`, a shell function, and read the config hash from the environment: neither is a rule parameter, so
# a moved venv reruns nothing and a config change reruns only the cells whose own spec changed (`svf tables`
# refuses to mix cells of different hashes). Snakemake formats the prefix: {{ }} are literal braces.
shell.prefix(f'set -euo pipefail; svf() {{{{ {SVF} "$@"; }}}}; export SVF_CONFIG_HASH={CONFIG_HASH}; ')
TABLE_NAMES = tuple(TABLES["tables"])
CELL = cell_id(WILDCARDS)  # the cell-id pattern with every field a wildcard (logs)
# Where the data, splits and (pre)trained weights of a cell's world live: one shared world, or one per training seed
# (data.synthetic.worlds: per_seed, the study's synthetic worlds).
WORLD = paths.resource_layout(config)
BASE_LEARNER = WORLD.base_learner_dir
# Training seeds: every cell once per seed (default: the config's seed, the paper's 321).
SEEDS = training_seeds(config)


def cells_for(names):
    """Cells (dicts) of the named tables, deduplicated (a cell shared by several tables trains once), every seed,
    restricted to the config's folds/shots."""
    try:
        return config_cells(config, TABLES, names)
    except ValueError as error:
        fail(ConfigError(str(error)))


# ---- warm start (demo): one server imports torch once and forks every `svf` job (see svf/warm.py) ----------------
WARM = {}


def start_warm_server():
    if config.get("warm_start") and workflow.local_exec:
        import tempfile

        from svf import warm

        path = os.path.join(tempfile.mkdtemp(prefix="svf-warm-"), "socket")
        WARM["pid"] = warm.start(path)
        atexit.register(stop_warm_server)  # also when Snakemake fails past its onerror handler
        os.environ[warm.ENV_SOCKET] = path  # inherited by every local job's shell


def stop_warm_server():
    if "pid" in WARM:
        from svf import warm

        warm.stop(WARM.pop("pid"))


ALL_CELLS = cells_for(config["tables"]["build"])

# Results bundle to import (svf/bundle/): its cells' training comes from the archive (rule import_bundle), only their
# evaluation runs here. The plan reads the archive's manifest alone and refuses, before any job, a bundled cell whose
# spec differs from the one this config gives it, naming the keys.
RESULTS_FROM = config.get("results_from")
IMPORT_PLAN = None
if RESULTS_FROM:
    from svf.bundle.manifest import describe_plan, plan_import, read_manifest

    IMPORT_PLAN = plan_import(read_manifest(RESULTS_FROM), config, TABLES, RESULTS_FROM)
    print(describe_plan(IMPORT_PLAN), file=sys.stderr)


wildcard_constraints:
    dataset="|".join(DATASETS),
    backbone="|".join(BACKBONES),
    method="|".join(METHODS),
    setting="|".join(SETTINGS),
    policy=POLICY_PATTERN.removeprefix("^").removesuffix("$"),  # the policy grammar of svf/policy.py
    recipe="|".join(sorted(config["recipes"])),
    shot=r"[1-9][0-9]*",
    fold=r"[0-3]",
    seed=r"[0-9]+",
    table="|".join(TABLE_NAMES),
    artifact=r"[a-z0-9_]+",
    bam_backbone="|".join(paths.PUBLISHED_BACKBONE_NAMES.values()),


def world_seed(wildcards):
    """The seed a resource's world is drawn with: the training seed when every seed has its own world, else the
    shared world's (synthetic data: data.synthetic.seed; the stand-in pretraining: the config's seed)."""
    return int(wildcards.seed) if "seed" in wildcards.keys() else None


def synthetic_seed(wildcards):
    seed = world_seed(wildcards)
    return config["data"]["synthetic"]["seed"] if seed is None else seed


# ---- paths (templates in svf/pipeline/paths.py) ------------------------------------------------------------------


def pv(path):
    """Expand path variables (<results>, <resources>, ...) in strings that are not rule inputs/outputs."""
    return workflow.pathvars.apply(path)


def mirror_arg(wildcards):
    mirror = config["data"]["mirror"]
    return f"--mirror {shlex.quote(mirror)}" if mirror else ""


def metrics_of(cells):
    return [paths.cell_file(c, paths.METRICS) for c in cells]


def published_base_learner(dataset, backbone, fold):
    root = config["weights"]["bam_base_learner_dir"]
    if not root:
        fail(ConfigError("weights.bam_base_learner is 'published' but weights.bam_base_learner_dir is not set"))
    return paths.published_base_learner(root, dataset, backbone, fold)


def table_outputs(name):
    return paths.table_files(name) + [paths.CURVES_FILE.format(table=name)]


def figure_cells():
    """The 1-shot cells of the configured Table 1 row (R50 baseline + SVF by default) feeding Figures 4 and 6, one per
    fold (the first training seed)."""
    row_id = config["figures"]["figure6_row"]
    if "table1" not in TABLE_NAMES:
        fail(ConfigError(f"figures.figure6_row names a row of table1, which {config['tables']['file']} lacks"))
    restrict = {"folds": config["tables"].get("folds"), "shots": config["tables"].get("shots")}
    try:
        cells = [
            c for c in cells_of(TABLES, ["table1"], row_ids=[row_id], seeds=SEEDS[:1], **restrict) if c["shot"] == 1
        ]
    except KeyError as error:
        fail(ConfigError(f"figures.figure6_row: {describe(error).message}"))
    if not cells:
        fail(ConfigError(f"figures.figure6_row {row_id!r} has no 1-shot cell in table1 (after fold/shot filters)"))
    return cells


# `snakemake --report FILE` (without --report-after-run): the targets are what exists, so the report shows the tables
# and figures built so far instead of failing on the first one missing.
REPORT_ONLY = (
    any(a == "--report" or a.startswith("--report=") for a in sys.argv) and "--report-after-run" not in sys.argv
)


def built(files):
    """``files``, or in a report-only run those of them that exist."""
    return [f for f in files if os.path.exists(pv(f))] if REPORT_ONLY else files


def target_rules():
    """The rules that only gather outputs (all, demo, tableN, study, estimate, figure4, figure6)."""
    return [r.name for r in workflow.rules if not r.has_wildcards() and not r.output]


def unknown_target_input(wildcards):
    fail(checks.unknown_target(wildcards.name, target_rules()))


def figure6_outputs():
    return list(paths.FIGURE6_FILES)


def figure4_outputs():
    return [paths.FIGURE4_FILE.format(fold=c["fold"]) for c in figure_cells()]


def all_outputs():
    outputs = [paths.RESULTS_CSV, paths.SUMMARY_MD, paths.OVERVIEW_PNG]
    for name in config["tables"]["build"]:
        outputs += table_outputs(name)
    return outputs + figure6_outputs() + figure4_outputs()


def expanded(template):
    """A parameter computed per job from a path template: wildcards filled in, path variables expanded (a directory
    an `svf` command takes, derived from the same template as the rule's files)."""
    return lambda wildcards: pv(template.format(**dict(wildcards)))


# ---- rule parameters ---------------------------------------------------------------------------------------------


def _cell(wildcards):
    return Cell.from_mapping(dict(wildcards))


def cell_spec_json(wildcards):
    return canonical_json(cell_spec(config, _cell(wildcards)))


def base_spec_json(wildcards):
    return canonical_json(base_learner_spec(config, wildcards.dataset, wildcards.backbone, wildcards.fold))


def cell_inputs(wildcards):
    return WORLD.inputs_of_cell(dict(wildcards))


def figure_cell(fold):
    return next(c for c in figure_cells() if c["fold"] == int(fold))


def figure4_inputs(wildcards):
    cell = figure_cell(wildcards.fold)
    return {
        **WORLD.inputs_of_cell(cell),
        "model": paths.cell_file(cell, paths.MODEL),
        "singular_values": paths.cell_file(cell, paths.SINGULAR_VALUES),
    }


def figure4_spec_json(wildcards):
    return canonical_json(cell_spec(config, Cell.from_mapping(figure_cell(wildcards.fold))))


def base_learner_arg(wildcards, input):
    return f"--base-learner {shlex.quote(input.base_learner)}" if "base_learner" in input.keys() else ""


def res(kind, key):
    return config.get("resources", {}).get(kind, {}).get(key)


# ---- the study (docs/study.md) -----------------------------------------------------------------------------------


def study_cells():
    return tables_study_cells(config, TABLES)


def probe_cells():
    return tables_probe_cells(config, TABLES)


def study_probes():
    return [paths.STUDY_PROBE.format(**c) for c in probe_cells()]


def study_figures():
    return list(paths.STUDY_FIGURES) + ([paths.STUDY_PROBE_FIGURE] if probe_cells() else [])


try:
    probe_cells()  # refuses, before any job, probe seeds that the study's rows also train with
except ValueError as error:
    fail(ConfigError(str(error)))


# ---- data, tables and figures helpers ------------------------------------------------------------------------


def raw_inputs(wildcards):
    """What `svf prepare` reads for a dataset: downloaded archives or the synthetic raw dataset."""
    if config["data"]["source"] == "synthetic":
        return {"raw": WORLD.raw_marker}
    return {"archives": paths.raw_downloads(wildcards.dataset)}


def raw_dir_of(wildcards):
    source = config["data"]["source"]
    return pv(WORLD.raw_dir.format(**dict(wildcards)) if source == "synthetic" else paths.DOWNLOADS_DIR)


def reevaluation_arg():
    """`svf tables`' tolerance between a bundle's recorded mIoU and the one re-evaluated here (imports only, so that
    the tables of a run that imports nothing keep their parameters)."""
    tolerance = config["tables"]["reevaluation_tolerance"]
    return f"--reevaluation-tolerance {tolerance}" if RESULTS_FROM else ""


def cell_ids_arg(cells):
    return " ".join(shlex.quote(cell_id(c)) for c in cells)


def demo_flag():
    """Figures of a demo run carry the "demo scale" mark."""
    return "--demo" if config.get("demo") else ""


def table_filter_args():
    """Options shared by `svf tables` and `svf overview`: fold/shot restriction, tolerance, demo, mixing."""
    args = [f"--tolerance {config['tables']['tolerance']}", "--seeds " + " ".join(str(s) for s in SEEDS)]
    for key in ("folds", "shots"):
        if config["tables"].get(key):
            args.append(f"--{key} " + " ".join(str(v) for v in config["tables"][key]))
    args.append(demo_flag())
    if config["tables"]["allow_mixed_config"]:
        args.append("--allow-mixed-config")
    return " ".join(args)
