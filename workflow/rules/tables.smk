# Results: metrics of every cell -> results.csv (pandas) -> Tables 1, 2, 4-8 beside the paper's numbers.


rule collect:
    input:
        metrics_of(ALL_CELLS),
    output:
        "<results>/results.csv",
    params:
        cells_root=pv("<results>/cells"),
        benchmarks=pv("<benchmarks>"),
        ids=cell_ids_arg(ALL_CELLS),
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    log:
        "<logs>/collect/results.log",
    localrule: True
    shell:
        "{SVF} collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} --out {output} "
        "--cells {params.ids} {params.mixed} > {log} 2>&1"


rule table:
    input:
        metrics=lambda w: metrics_of(cells_for([w.table])),
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
    output:
        cells="<results>/tables/{table}_cells.csv",
        csv=report("<results>/tables/{table}.csv", caption="../report/table.rst", category="Tables",
                   labels={"table": "{table}"}),
        md="<results>/tables/{table}.md",
        tex="<results>/tables/{table}.tex",
    params:
        cells_root=pv("<results>/cells"),
        benchmarks=pv("<benchmarks>"),
        ids=lambda w: cell_ids_arg(cells_for([w.table])),
        out=lambda w, output: str(Path(output.cells).parent),
        options=table_filter_args(),
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    log:
        "<logs>/tables/{table}.log",
    localrule: True
    shell:
        "({SVF} collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} --out {output.cells} "
        "--cells {params.ids} {params.mixed} && "
        "{SVF} tables --results {output.cells} --tables {input.tables} --paper {input.paper} --out {params.out} "
        "--only {wildcards.table} {params.options}) > {log} 2>&1"


rule summary:
    input:
        results="<results>/results.csv",
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
    output:
        summary="<results>/tables/summary.md",
        comparison="<results>/tables/comparison.csv",
    params:
        out=lambda w, output: str(Path(output.summary).parent),
        only=" ".join(config["tables"]["build"]),
        options=table_filter_args(),
    log:
        "<logs>/tables/summary.log",
    localrule: True
    shell:
        "{SVF} tables --results {input.results} --tables {input.tables} --paper {input.paper} --out {params.out} "
        "--only {params.only} --summary {output.summary} --comparison {output.comparison} {params.options} "
        "> {log} 2>&1"


rule study_report:
    input:
        cells=expand("<results>/tables/{table}_cells.csv", table=config["study"]["tables"]),
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
    output:
        md=report("<results>/study/study.md", caption="../report/table.rst", category="Study"),
        csv="<results>/study/study.csv",
        figures=expand("<figures>/study_{table}.png", table=config["study"]["tables"]),
    params:
        out=lambda w, output: str(Path(output.md).parent),
        figures=lambda w, output: str(Path(output.figures[0]).parent),
        only=" ".join(config["study"]["tables"]),
        references=" ".join(f"{t}={r}" for t, r in config["study"]["references"].items()),
        options=table_filter_args(),
    log:
        "<logs>/tables/study.log",
    localrule: True
    shell:
        "{SVF} study --results {input.cells} --tables {input.tables} --paper {input.paper} --out {params.out} "
        "--figures-dir {params.figures} --only {params.only} --references {params.references} {params.options} "
        "> {log} 2>&1"


rule estimate_cost:
    output:
        csv="<results>/estimate.csv",
        md="<results>/estimate.md",
    params:
        config=lambda w: canonical_json(config),
        out=lambda w, output: str(Path(output.csv).parent),
    threads: res("train", "threads")
    resources:
        gpu=1,
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    log:
        "<logs>/estimate.log",
    shell:
        "{SVF} estimate --config-json {params.config:q} --out {params.out} --threads {threads} > {log} 2>&1"
