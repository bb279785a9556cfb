# Results bundles (svf/bundle/, docs/bundles.md). `snakemake bundle` writes every finished cell of the config (its
# trained tensors, logs, metrics and spec, BAM's base learners) into one archive. With `results_from: ARCHIVE` in
# the config, rule import_bundle replaces rule train (and train_base) for the cells the archive holds: it checks
# every checksum and spec, places the files, and rule evaluate then re-evaluates each cell here.


rule bundle_export:
    input:
        metrics_of(ALL_CELLS),
    output:
        paths.BUNDLE_FILE,
    log:
        "<logs>/bundle/export.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        config=lambda w: canonical_json(config),
        results=expanded(paths.RESULTS_DIR),
        resources=expanded(paths.RESOURCES_DIR),
    shell:
        "svf bundle export {output} --config-json {params.config:q} --results {params.results} "
        "--resources {params.resources} > {log} 2>&1"


if IMPORT_PLAN is not None and IMPORT_PLAN.cells:

    rule import_bundle:
        input:
            archive=RESULTS_FROM,
        output:
            IMPORT_PLAN.outputs(),
        log:
            "<logs>/bundle/import.log",
        localrule: True
        conda:
            CONDA_ENV
        params:
            config=lambda w: canonical_json(config),
            results=expanded(paths.RESULTS_DIR),
            resources=expanded(paths.RESOURCES_DIR),
        shell:
            "svf bundle import {input.archive} --config-json {params.config:q} --results {params.results} "
            "--resources {params.resources} > {log} 2>&1"

    ruleorder: import_bundle > train

    if config["weights"]["bam_base_learner"] == "train":

        ruleorder: import_bundle > train_base

    else:

        ruleorder: import_bundle > import_base_learner
