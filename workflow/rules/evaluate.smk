# Evaluation of a trained cell on its deterministic test episodes (protocol from the recipe or the config).
# The config hash is not a rule parameter on purpose: a config change re-runs only the cells whose own spec
# changed, and `svf tables` refuses to mix cells of different hashes unless told to.


rule evaluate:
    input:
        unpack(cell_inputs),
        model=f"<results>/cells/{CELL}/model.pt",
        summary=f"<results>/cells/{CELL}/train_summary.json",
    output:
        metrics=f"<results>/cells/{CELL}/metrics.json",
    params:
        spec=cell_spec_json,
        root=lambda w, input: str(Path(input.dataset).parent),
        splits=lambda w, input: str(Path(input.splits).parent),
        base_learner=base_learner_arg,
    threads: res("evaluate", "threads")
    resources:
        gpu=1,
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    log:
        f"<logs>/evaluate/{CELL}.log",
    benchmark:
        f"<benchmarks>/evaluate/{CELL}.tsv"
    shell:
        "{SVF} evaluate --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} {params.base_learner} --model {input.model} --out {output.metrics} "
        "--config-hash {CONFIG_HASH} --threads {threads} > {log} 2>&1"
