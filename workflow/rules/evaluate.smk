# Evaluation of a trained cell on its deterministic test episodes (protocol from the recipe or the config).
# The config hash is not a rule parameter on purpose: a config change re-runs only the cells whose own spec
# changed, and `svf tables` refuses to mix cells of different hashes unless told to.


rule evaluate:
    input:
        unpack(cell_inputs),
        model=paths.cell_file(WILDCARDS, paths.MODEL),
        summary=paths.cell_file(WILDCARDS, paths.TRAIN_SUMMARY),
    output:
        metrics=paths.cell_file(WILDCARDS, paths.METRICS),
    log:
        f"<logs>/evaluate/{CELL}.log",
    benchmark:
        paths.benchmark_file("evaluate", WILDCARDS)
    conda:
        CONDA_ENV
    threads: res("evaluate", "threads")
    resources:
        gpu=1,
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    params:
        spec=cell_spec_json,
        root=expanded(WORLD.dataset_root),
        splits=expanded(WORLD.splits_dir),
        base_learner=base_learner_arg,
    shell:
        "svf --log {log} evaluate --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} {params.base_learner} --model {input.model} --out {output.metrics} "
        "--config-hash $SVF_CONFIG_HASH --threads {threads}"
