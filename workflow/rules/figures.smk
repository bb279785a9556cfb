# Figures: Figure 6 (singular values before/after SVF), Figure 4 (response maps of the components whose singular
# value changed most), training curves per table, and an overview of reproduced vs paper numbers.


rule figure6_plot:
    input:
        lambda w: [paths.cell_file(c, paths.SINGULAR_VALUES) for c in figure_cells()],
    output:
        png=report(
            paths.FIGURE6_FILES[0], caption="../report/figure.rst", category="Figures", labels={"figure": "Figure 6"}
        ),
        pdf=paths.FIGURE6_FILES[1],
        data=paths.FIGURE6_DATA,
    log:
        "<logs>/figures/figure6.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        cells_root=expanded(paths.CELLS_ROOT),
        ids=lambda w: cell_ids_arg(figure_cells()),
        demo=demo_flag(),
    shell:
        "svf --log {log} figure6 --cells-root {params.cells_root} --cells {params.ids} --out {output.png} "
        "--data {output.data} {params.demo}"


rule figure4_plot:
    input:
        unpack(figure4_inputs),
    output:
        report(
            paths.FIGURE4_FILE,
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "Figure 4", "fold": "{fold}"},
        ),
    log:
        "<logs>/figures/figure4_fold{fold}.log",
    conda:
        CONDA_ENV
    params:
        spec=figure4_spec_json,
        root=lambda w: pv(WORLD.dataset_root.format(**figure_cell(w.fold))),
        splits=lambda w: pv(WORLD.splits_dir.format(**figure_cell(w.fold))),
        images=config["figures"]["figure4_images"],
        demo=demo_flag(),
    shell:
        "svf --log {log} figure4 --spec {params.spec:q} --dataset-root {params.root} --splits {params.splits} "
        "--weights {input.weights} --model {input.model} --images {params.images} --out {output} "
        "{params.demo}"


rule curves:
    input:
        logs=lambda w: [paths.cell_file(c, paths.TRAIN_LOG) for c in cells_for([w.table])],
        tables=config["tables"]["file"],
    output:
        report(
            paths.CURVES_FILE,
            caption="../report/figure.rst",
            category="Training curves",
            labels={"table": "{table}"},
        ),
    log:
        "<logs>/figures/curves_{table}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        cells_root=expanded(paths.CELLS_ROOT),
        ids=lambda w: cell_ids_arg(cells_for([w.table])),
        demo=demo_flag(),
    shell:
        "svf --log {log} curves --cells-root {params.cells_root} --cells {params.ids} --tables {input.tables} "
        "--table {wildcards.table} --out {output} {params.demo}"


rule overview:
    input:
        results=paths.RESULTS_CSV,
        tables=config["tables"]["file"],
        paper=paths.PAPER_RESULTS,
    output:
        report(paths.OVERVIEW_PNG, caption="../report/figure.rst", category="Figures", labels={"figure": "overview"}),
    log:
        "<logs>/figures/overview.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        only=" ".join(config["tables"]["build"]),
        options=table_filter_args(),
    shell:
        "svf --log {log} overview --results {input.results} --tables {input.tables} --paper {input.paper} "
        "--out {output} "
        "--only {params.only} {params.options}"
