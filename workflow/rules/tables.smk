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
        paper="config/paper_results.csv",
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
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    shell:
        "svf --log {log.collect} collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} "
        "--out {output.cells} --cells {params.ids} {params.mixed} && "
        "svf --log {log.tables} tables --results {output.cells} --tables {input.tables} --paper {input.paper} "
        "--out {params.out} --only {wildcards.table} {params.options}"


rule summary:
    input:
        results=paths.RESULTS_CSV,
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
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
    shell:
        "svf --log {log} tables --results {input.results} --tables {input.tables} --paper {input.paper} "
        "--out {params.out} --only {params.only} --summary {output.summary} --comparison {output.comparison} "
        "{params.options}"


rule study_report:
    input:
        cells=expand(paths.TABLE_CELLS, table=config["study"]["tables"]),
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
    output:
        md=report(f"{paths.STUDY_DIR}/study.md", caption="../report/table.rst", category="Study"),
        csv=f"{paths.STUDY_DIR}/study.csv",
        figures=expand(paths.STUDY_FIGURE, table=config["study"]["tables"]),
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
        options=table_filter_args(),
    shell:
        "svf --log {log} study --results {input.cells} --tables {input.tables} --paper {input.paper} "
        "--out {params.out} --figures-dir {params.figures} --only {params.only} --references {params.references} "
        "{params.options}"


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
