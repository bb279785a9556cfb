# Results: metrics of every cell -> results.csv (pandas) -> Tables 1, 2, 4-8 beside the paper's numbers.


rule collect:
    input:
        metrics_of(ALL_CELLS),
    output:
        paths.RESULTS_CSV,
    log:
        "<logs>/collect/results.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        cells_root=expanded(paths.CELLS_ROOT),
        benchmarks=expanded(paths.BENCHMARKS_DIR),
        ids=cell_ids_arg(ALL_CELLS),
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    shell:
        "svf --log {log} collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} --out {output} "
        "--cells {params.ids} {params.mixed}"


rule table:
    input:
        metrics=lambda w: metrics_of(cells_for([w.table])),
        tables=config["tables"]["file"],
        paper=paths.PAPER_RESULTS,
    output:
        cells=paths.TABLE_CELLS,
        csv=report(
            paths.TABLE_FILES[0],
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        md=paths.TABLE_FILES[1],
        tex=paths.TABLE_FILES[2],
    log:
        collect="<logs>/tables/{table}_collect.log",
        tables="<logs>/tables/{table}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        cells_root=expanded(paths.CELLS_ROOT),
        benchmarks=expanded(paths.BENCHMARKS_DIR),
        ids=lambda w: cell_ids_arg(cells_for([w.table])),
        out=expanded(paths.TABLES_DIR),
        options=table_filter_args(),
        reevaluation=reevaluation_arg(),
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    shell:
        "svf --log {log.collect} collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} "
        "--out {output.cells} --cells {params.ids} {params.mixed} && "
        "svf --log {log.tables} tables --results {output.cells} --tables {input.tables} --paper {input.paper} "
        "--out {params.out} --only {wildcards.table} {params.options} {params.reevaluation}"


rule summary:
    input:
        results=paths.RESULTS_CSV,
        tables=config["tables"]["file"],
        paper=paths.PAPER_RESULTS,
    output:
        summary=paths.SUMMARY_MD,
        comparison=paths.COMPARISON_CSV,
    log:
        "<logs>/tables/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        out=expanded(paths.TABLES_DIR),
        only=" ".join(config["tables"]["build"]),
        options=table_filter_args(),
        reevaluation=reevaluation_arg(),
    shell:
        "svf --log {log} tables --results {input.results} --tables {input.tables} --paper {input.paper} "
        "--out {params.out} --only {params.only} --summary {output.summary} --comparison {output.comparison} "
        "{params.options} {params.reevaluation}"


rule study_cells:
    input:
        metrics_of(study_cells()),
    output:
        paths.STUDY_CELLS,
    log:
        "<logs>/tables/study_cells.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        cells_root=expanded(paths.CELLS_ROOT),
        benchmarks=expanded(paths.BENCHMARKS_DIR),
        ids=cell_ids_arg(study_cells()),
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    shell:
        "svf --log {log} collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} --out {output} "
        "--cells {params.ids} {params.mixed}"


rule probe:
    input:
        unpack(cell_inputs),
        model=paths.cell_file(WILDCARDS, paths.MODEL),
    output:
        paths.STUDY_PROBE,
    log:
        f"<logs>/probe/{CELL}.log",
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
        "svf --log {log} probe --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} --model {input.model} {params.base_learner} --out {output} "
        "--threads {threads}"


rule study_report:
    input:
        cells=paths.STUDY_CELLS,
        probes=study_probes(),
        tables=config["tables"]["file"],
        paper=paths.PAPER_RESULTS,
    output:
        md=report(paths.STUDY_FILES[0], caption="../report/table.rst", category="Study"),
        csv=paths.STUDY_FILES[1],
        rows=paths.STUDY_FILES[2],
        figures=study_figures(),
    log:
        "<logs>/tables/study.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        out=expanded(paths.STUDY_DIR),
        figures=expanded(paths.FIGURES_DIR),
        only=" ".join(config["study"]["tables"]),
        references=" ".join(f"{t}={r}" for t, r in config["study"]["references"].items()),
        primary=" ".join(shlex.quote(c) for c in config["study"]["primary"]),
        margin=config["study"]["margin"],
        options=table_filter_args(),
    shell:
        "svf --log {log} study --results {input.cells} --tables {input.tables} --paper {input.paper} "
        "--out {params.out} --figures-dir {params.figures} --only {params.only} --references {params.references} "
        "--primary {params.primary} --margin {params.margin} --probes {input.probes} {params.options}"


rule estimate_cost:
    output:
        csv=paths.ESTIMATE_CSV,
        md=paths.ESTIMATE_MD,
    log:
        "<logs>/estimate.log",
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        gpu=1,
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        config=lambda w: canonical_json(config),
        out=expanded(paths.RESULTS_DIR),
    shell:
        "svf --log {log} estimate --config-json {params.config:q} --out {params.out} --threads {threads}"
