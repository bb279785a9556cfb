# Training: BAM's stage-1 base learners, then one process per table cell (one GPU each).
# Checkpoints live outside the declared outputs (<resources>/checkpoints/...) so that Snakemake's clean-up of a
# killed job keeps them and the rerun resumes from the last finished epoch.


if config["weights"]["bam_base_learner"] == "train":

    rule train_base:
        input:
            dataset=paths.DATASET_JSON,
            splits=paths.SPLITS_JSON,
            weights=paths.WEIGHTS_FILE,
        output:
            model=f"{BASE_LEARNER}/{paths.MODEL}",
            log_csv=f"{BASE_LEARNER}/{paths.TRAIN_LOG}",
        log:
            "<logs>/train_base/{dataset}/{backbone}/fold{fold}.log",
        benchmark:
            "<benchmarks>/train_base/{dataset}/{backbone}/fold{fold}.tsv"
        conda:
            CONDA_ENV
        threads: res("train_base", "threads")
        resources:
            gpu=1,
            mem_mb=res("train_base", "mem_mb"),
            runtime=res("train_base", "runtime"),
        params:
            spec=base_spec_json,
            root=expanded(paths.DATASET_ROOT),
            splits=expanded(paths.SPLITS_DIR),
            checkpoint=expanded(paths.BASE_LEARNER_CHECKPOINTS),
        shell:
            "svf --log {log} train-base --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
            "--weights {input.weights} --out {output.model} --checkpoint-dir {params.checkpoint} "
            "--threads {threads}"

else:

    rule import_base_learner:
        input:
            published=lambda w: published_base_learner(w.dataset, w.backbone, w.fold),
        output:
            model=f"{BASE_LEARNER}/{paths.MODEL}",
        log:
            "<logs>/import_base_learner/{dataset}/{backbone}/fold{fold}.log",
        localrule: True
        conda:
            CONDA_ENV
        shell:
            "svf --log {log} import-base-learner --source {input.published} --out {output.model}"


rule train:
    input:
        unpack(cell_inputs),
    output:
        model=paths.cell_file(WILDCARDS, paths.MODEL),
        log_csv=paths.cell_file(WILDCARDS, paths.TRAIN_LOG),
        singular_values=paths.cell_file(WILDCARDS, paths.SINGULAR_VALUES),
        summary=paths.cell_file(WILDCARDS, paths.TRAIN_SUMMARY),
    log:
        f"<logs>/train/{CELL}.log",
    benchmark:
        paths.benchmark_file("train", WILDCARDS)
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        gpu=1,
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        spec=cell_spec_json,
        root=expanded(paths.DATASET_ROOT),
        splits=expanded(paths.SPLITS_DIR),
        base_learner=base_learner_arg,
        out=expanded(paths.CELL_DIR),
        checkpoint=expanded(paths.CELL_CHECKPOINTS),
    shell:
        "svf --log {log} train --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} {params.base_learner} --out-dir {params.out} "
        "--checkpoint-dir {params.checkpoint} --config-hash $SVF_CONFIG_HASH --threads {threads}"
