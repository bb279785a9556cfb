# Two entry points: `make demo` and `make test`. Each creates .venv with python3.11 when missing and installs
# the package (editable) with what it needs; the install is redone only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo study test install clean-demo

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test,reports]'
	touch $(STAMP)

# The whole demo DAG (synthetic data, tiny backbones, CPU): every table and figure under demo/.
demo: $(STAMP)
	$(BIN)/snakemake demo --workflow-profile demo --configfile config/demo.yaml

# Tables 4-8 on every fold with 3 seeds: intervals, differences and a verdict per claim under results/study/study.md.
study: $(STAMP)
	$(BIN)/snakemake study --workflow-profile demo --configfile config/demo.yaml config/study.yaml

# The test suite; pytest's exit code 5 (no tests collected) fails like any other error.
test: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)
