# Training: BAM's stage-1 base learners, then one process per table cell (one GPU each).
# Checkpoints live outside the declared outputs (<resources>/checkpoints/...) so that Snakemake's clean-up of a
# killed job keeps them and the rerun resumes from the last finished epoch.


if config["weights"]["bam_base_learner"] == "train":

    rule train_base:
        input:
            dataset=WORLD.dataset_json,
            splits=WORLD.splits_json,
            weights=WORLD.weights_file,
        output:
            model=f"{BASE_LEARNER}/{paths.MODEL}",
            log_csv=f"{BASE_LEARNER}/{paths.TRAIN_LOG}",
        log:
            f"<logs>/train_base/{WORLD.log_prefix}{{dataset}}/{{backbone}}/fold{{fold}}.log",
        benchmark:
            f"<benchmarks>/train_base/{WORLD.log_prefix}{{dataset}}/{{backbone}}/fold{{fold}}.tsv"
        conda:
            CONDA_ENV
        threads: res("train_base", "threads")
        resources:
            gpu=1,
            mem_mb=res("train_base", "mem_mb"),
            runtime=res("train_base", "runtime"),
        params:
            spec=base_spec_json,
            root=expanded(WORLD.dataset_root),
            splits=expanded(WORLD.splits_dir),
            checkpoint=expanded(WORLD.base_learner_checkpoints),
        shell:
            "svf --log {log} train-base --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
            "--weights {input.weights} --out {output.model} --checkpoint-dir {params.checkpoint} "
            "--threads {threads}"

else:

    rule published_base_learner:
        # Only runs when BAM's published checkpoint is not in place: it fails, saying where to get it.
        output:
            published_base_learner("{dataset}", "{bam_backbone}", "{fold}"),
        log:
            "<logs>/published_base_learner/{dataset}/{bam_backbone}/fold{fold}.log",
        localrule: True
        conda:
            CONDA_ENV
        shell:
            "svf import-base-learner --missing {output:q} > {log} 2>&1"

    rule import_base_learner:
        input:
            published=lambda w: published_base_learner(w.dataset, w.backbone, w.fold),
        output:
            model=f"{BASE_LEARNER}/{paths.MODEL}",
        log:
            f"<logs>/import_base_learner/{WORLD.log_prefix}{{dataset}}/{{backbone}}/fold{{fold}}.log",
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
        root=expanded(WORLD.dataset_root),
        splits=expanded(WORLD.splits_dir),
        base_learner=base_learner_arg,
        out=expanded(paths.CELL_DIR),
        checkpoint=expanded(paths.CELL_CHECKPOINTS),
    shell:
        "svf --log {log} train --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} {params.base_learner} --out-dir {params.out} "
        "--checkpoint-dir {params.checkpoint} --config-hash $SVF_CONFIG_HASH --threads {threads}"
