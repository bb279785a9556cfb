"""The pipeline's vocabulary, shared by the Snakefile, the CLI and the reports.

- ``cells``: what a table cell is (its fields, its id format and the parser of that id);
- ``tables``: config/tables.yaml, validated, turned into cells;
- ``specs``: the JSON specifications of a cell, a BAM base learner and the demo's pretraining;
- ``paths``: every ``<resources>``/``<results>`` path template and the artifacts a cell needs.

The Snakefile imports this package while it builds the DAG, so every module here stays light: yaml and jsonschema
at most, never torch, pandas or matplotlib (a test checks it).
"""
