# SVF reproduction pipeline. `snakemake` builds every table and figure of the paper; `snakemake table1` one table;
# `snakemake -n table4` lists the cells before any GPU hour is spent. Helpers live in workflow/rules/common.smk.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/bundle.smk"


onstart:
    start_warm_server()


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()


if REPORT_ONLY and not built(all_outputs()):
    print(
        "svf workflow: nothing is built yet, so the report lists no tables or figures; run `snakemake` (or a "
        "table target) first",
        file=sys.stderr,
    )


rule all:
    default_target: True
    input:
        built(all_outputs()),


rule demo:
    input:
        built(all_outputs()),


# One target rule per table of the tables file (config/tables.yaml): a table added there is a target at once.
for _table in TABLE_NAMES:

    rule:
        name:
            _table
        input:
            built(table_outputs(_table)),


rule study:
    input:
        built([f for name in config["study"]["tables"] for f in table_outputs(name)] + list(paths.STUDY_FILES)),


rule bundle:
    # every finished cell of the config in one archive (svf bundle export; docs/bundles.md)
    input:
        paths.BUNDLE_FILE,


rule estimate:
    # time every kind of cell on this machine's device (synthetic tensors) and project device-hours
    input:
        paths.ESTIMATE_MD,


rule figure4:
    input:
        built(figure4_outputs()),


rule figure6:
    input:
        built(figure6_outputs()),


# Last: a target that is neither a rule above nor a path (`snakemake tabel4`) ends here with the list of targets.
rule unknown_target:
    input:
        unknown_target_input,
    output:
        "{name}",
    log:
        "<logs>/unknown_target/{name}.log",
    wildcard_constraints:
        name=r"[A-Za-z][A-Za-z0-9_-]*",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "exit 2"
