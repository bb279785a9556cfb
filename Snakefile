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


rule all:
    default_target: True
    input:
        all_outputs(),


rule demo:
    input:
        all_outputs(),


rule table1:
    input:
        table_outputs("table1"),


rule table2:
    input:
        table_outputs("table2"),


rule table4:
    input:
        table_outputs("table4"),


rule table5:
    input:
        table_outputs("table5"),


rule table6:
    input:
        table_outputs("table6"),


rule table7:
    input:
        table_outputs("table7"),


rule table8:
    input:
        table_outputs("table8"),


rule study:
    input:
        [f for name in config["study"]["tables"] for f in table_outputs(name)],
        paths.STUDY_FILES,


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
        figure4_outputs(),


rule figure6:
    input:
        figure6_outputs(),
