# Figures: Figure 6 (singular values before/after SVF), Figure 4 (response maps of the components whose singular
# value changed most), training curves per table, and an overview of reproduced vs paper numbers.


rule figure6_plot:
    input:
        lambda w: [f"{cell_dir(c)}/singular_values.json" for c in figure_cells()],
    output:
        png=report(FIGURE6_FILES[0], caption="../report/figure.rst", category="Figures",
                   labels={"figure": "Figure 6"}),
        pdf=FIGURE6_FILES[1],
        data="<figures>/figure6_singular_values.csv",
    params:
        cells_root=pv("<results>/cells"),
        ids=lambda w: cell_ids_arg(figure_cells()),
    log:
        "<logs>/figures/figure6.log",
    localrule: True
    shell:
        "{SVF} figure6 --cells-root {params.cells_root} --cells {params.ids} --out {output.png} --data {output.data} "
        "> {log} 2>&1"


rule figure4_plot:
    input:
        unpack(figure4_inputs),
    output:
        report("<figures>/figure4_fold{fold}.png", caption="../report/figure.rst", category="Figures",
               labels={"figure": "Figure 4", "fold": "{fold}"}),
    params:
        spec=figure4_spec_json,
        root=lambda w, input: str(Path(input.dataset).parent),
        splits=lambda w, input: str(Path(input.splits).parent),
        images=config["figures"]["figure4_images"],
    log:
        "<logs>/figures/figure4_fold{fold}.log",
    shell:
        "{SVF} figure4 --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} --model {input.model} --images {params.images} --out {output} > {log} 2>&1"


rule curves:
    input:
        lambda w: [f"{cell_dir(c)}/train_log.csv" for c in cells_for([w.table])],
    output:
        report("<figures>/curves_{table}.png", caption="../report/figure.rst", category="Training curves",
               labels={"table": "{table}"}),
    params:
        cells_root=pv("<results>/cells"),
        ids=lambda w: cell_ids_arg(cells_for([w.table])),
    log:
        "<logs>/figures/curves_{table}.log",
    localrule: True
    shell:
        "{SVF} curves --cells-root {params.cells_root} --cells {params.ids} --title {wildcards.table} "
        "--out {output} > {log} 2>&1"


rule overview:
    input:
        results="<results>/results.csv",
        tables=config["tables"]["file"],
        paper="config/paper_results.csv",
    output:
        report("<figures>/overview.png", caption="../report/figure.rst", category="Figures",
               labels={"figure": "overview"}),
    params:
        only=" ".join(config["tables"]["build"]),
        options=table_filter_args(),
    log:
        "<logs>/figures/overview.log",
    localrule: True
    shell:
        "{SVF} overview --results {input.results} --tables {input.tables} --paper {input.paper} --out {output} "
        "--only {params.only} {params.options} > {log} 2>&1"
