# Training: BAM's stage-1 base learners, then one process per table cell (one GPU each).
# Checkpoints live outside the declared outputs (<resources>/checkpoints/...) so that Snakemake's clean-up of a
# killed job keeps them and the rerun resumes from the last finished epoch.


if config["weights"]["bam_base_learner"] == "train":

    rule train_base:
        input:
            dataset="<resources>/data/{dataset}/dataset.json",
            splits="<resources>/splits/{dataset}/splits_summary.json",
            weights="<resources>/weights/{backbone}.pth",
        output:
            model="<resources>/base_learners/{dataset}/{backbone}/fold{fold}/model.pt",
            log_csv="<resources>/base_learners/{dataset}/{backbone}/fold{fold}/train_log.csv",
        params:
            spec=base_spec_json,
            root=lambda w, input: str(Path(input.dataset).parent),
            splits=lambda w, input: str(Path(input.splits).parent),
            checkpoint=lambda w: pv(f"<resources>/checkpoints/base_learners/{w.dataset}/{w.backbone}/fold{w.fold}"),
        threads: res("train_base", "threads")
        resources:
            gpu=1,
            mem_mb=res("train_base", "mem_mb"),
            runtime=res("train_base", "runtime"),
        log:
            "<logs>/train_base/{dataset}/{backbone}/fold{fold}.log",
        benchmark:
            "<benchmarks>/train_base/{dataset}/{backbone}/fold{fold}.tsv"
        shell:
            "{SVF} train-base --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
            "--weights {input.weights} --out {output.model} --checkpoint-dir {params.checkpoint} "
            "--threads {threads} > {log} 2>&1"

else:

    rule import_base_learner:
        input:
            published=lambda w: published_base_learner(w.dataset, w.backbone, w.fold),
        output:
            model="<resources>/base_learners/{dataset}/{backbone}/fold{fold}/model.pt",
        log:
            "<logs>/import_base_learner/{dataset}/{backbone}/fold{fold}.log",
        localrule: True
        shell:
            "{SVF} import-base-learner --source {input.published} --out {output.model} > {log} 2>&1"


rule train:
    input:
        unpack(cell_inputs),
    output:
        model=f"<results>/cells/{CELL}/model.pt",
        log_csv=f"<results>/cells/{CELL}/train_log.csv",
        singular_values=f"<results>/cells/{CELL}/singular_values.json",
        summary=f"<results>/cells/{CELL}/train_summary.json",
    params:
        spec=cell_spec_json,
        root=lambda w, input: str(Path(input.dataset).parent),
        splits=lambda w, input: str(Path(input.splits).parent),
        base_learner=base_learner_arg,
        out=lambda w, output: str(Path(output.model).parent),
        checkpoint=lambda w: pv(f"<resources>/checkpoints/cells/{CELL.format(**w)}"),
    threads: res("train", "threads")
    resources:
        gpu=1,
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    log:
        f"<logs>/train/{CELL}.log",
    benchmark:
        f"<benchmarks>/train/{CELL}.tsv"
    shell:
        "{SVF} train --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} {params.base_learner} --out-dir {params.out} "
        "--checkpoint-dir {params.checkpoint} --config-hash {CONFIG_HASH} --threads {threads} > {log} 2>&1"
