# Results: metrics of every cell -> results.csv (pandas) -> Tables 1, 2, 4-8 beside the paper's numbers.


def cell_ids_arg(cells):
    return " ".join(shlex.quote(tables_config.cell_id(c)) for c in cells)


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
        "svf collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} --out {output} "
        "--cells {params.ids} {params.mixed} > {log} 2>&1"


rule table:
    input:
        metrics=lambda w: metrics_of(cells_for([w.table])),
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
    output:
        cells="<results>/tables/{table}_cells.csv",
        files=table_files("{table}"),
    params:
        cells_root=pv("<results>/cells"),
        benchmarks=pv("<benchmarks>"),
        ids=lambda w: cell_ids_arg(cells_for([w.table])),
        out=lambda w, output: str(Path(output.cells).parent),
        tolerance=config["tables"]["tolerance"],
        demo="--demo" if config.get("demo") else "",
        mixed="--allow-mixed-config" if config["tables"]["allow_mixed_config"] else "",
    log:
        "<logs>/tables/{table}.log",
    localrule: True
    shell:
        "(svf collect --cells-root {params.cells_root} --benchmarks {params.benchmarks} --out {output.cells} "
        "--cells {params.ids} {params.mixed} && "
        "svf tables --results {output.cells} --tables {input.tables} --paper {input.paper} --out {params.out} "
        "--only {wildcards.table} --tolerance {params.tolerance} {params.demo} {params.mixed}) > {log} 2>&1"
