# Two entry points: `make demo` and `make test`. Each creates .venv when missing and installs exactly the versions of
# requirements.lock (the pipeline, tests and reports: pyproject.toml's extras pipeline, test, reports; then the package
# itself, editable); the install is redone only when the lock or pyproject.toml changes. `make lock` refreshes the
# lock from pyproject.toml's ranges (uv keeps the locked versions that still satisfy them).
SUPPORTED := 3.11-3.13
# The first of these that runs and is 3.11-3.13; 3.11 first (CI's version; here its torch wheels lie on disk).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	  if $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1; then \
	    echo $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8

.PHONY: demo study study-fold-private pilot pilot-collapse test lint install lock gpu-check clean-demo

install: $(STAMP)

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python $(SUPPORTED) found (tried python3.11, python3.12, python3.13, python3);" \
	       "install one or run e.g. make PYTHON=/path/to/python3.12" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --require-hashes -r requirements.lock
	$(BIN)/pip install --no-deps -e .
	touch $(STAMP)

# Re-resolve pyproject.toml's ranges (the library's dependencies and the pipeline, test and reports extras) for every
# supported Python (one universal file, markers where versions differ, hashes of every wheel); commit the result
# after `make test` passes with it.
lock: | $(BIN)/python
	$(BIN)/python -m uv --version >/dev/null 2>&1 || $(BIN)/pip install uv==$(UV_VERSION)
	$(BIN)/python -m uv pip compile pyproject.toml --extra pipeline --extra test --extra reports --universal \
	  --python-version 3.11 --generate-hashes --custom-compile-command "make lock" -o requirements.lock

# The whole demo DAG (synthetic data, tiny backbones, CPU): every table and figure under results/demo, figures/demo.
demo: $(STAMP)
	$(BIN)/snakemake demo --workflow-profile demo --configfile config/demo.yaml

# The study of the paper's claims (docs/study.md): Tables 4-8's rows trained alike on every fold, 2 seeds (8-12 for
# the primary claims' rows, each as its claims' power needs) in one shared synthetic world, selection on held-out
# episodes; verdicts in results/study/study/study.md.
study: $(STAMP)
	$(BIN)/snakemake study --workflow-profile demo --configfile config/demo.yaml config/study.yaml config/study-cpu.yaml

# The study's second world (docs/study.md, "Second world"): Table 5's rows where each fold's novel classes look like
# none of its base classes; verdicts in results/study-fold-private/study/study.md.
study-fold-private: $(STAMP)
	$(BIN)/snakemake study --workflow-profile demo --configfile config/demo.yaml config/study.yaml config/study-cpu.yaml \
	  config/study-fold-private.yaml

# A pilot (docs/study.md): $(1) its settings (config/pilot/<setting>.yaml, results/pilot/<setting>), $(2) which pilot's
# rows and seeds (svf/report/pilot.py); each setting's runs, then the blind summary of all of them.
define run-pilot
	for s in $(1); do \
	  $(BIN)/snakemake $$($(BIN)/python -m svf.report.pilot targets results/pilot/$$s --pilot $(2)) \
	    --workflow-profile demo --configfile config/demo.yaml config/study.yaml config/study-cpu.yaml \
	    config/pilot/$$s.yaml || exit 1; \
	done
	$(BIN)/python -m svf.report.pilot summary $(addprefix results/pilot/,$(1)) --pilot $(2)
endef

# The variance pilot for the study's third design (docs/study.md, "Variance pilot"): rows frozen, SVF and full
# fine-tuning on folds 0-3, seeds 901-904, under each candidate setting; prints each setting's spread only.
PILOT_SETTINGS := flat-best flat-last poly-best
pilot: $(STAMP)
	$(call run-pilot,$(PILOT_SETTINGS),variance)

# The collapse pilot for a sixth design (docs/study.md, "Collapse pilot"): the five primary rows on folds 0-3, seeds
# 905-908, under the head and backbone rates x1, x2 and x3; prints each setting's spread, failures and the share of
# runs off the all-background plateau by epoch 10 only.
COLLAPSE_SETTINGS := collapse-poly1 collapse-poly2 collapse-poly3
pilot-collapse: $(STAMP)
	$(call run-pilot,$(COLLAPSE_SETTINGS),collapse)

# The test suite; pytest's exit code 5 (no tests collected) fails like any other error.
test: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

# Workflow style, as the snakemake-workflows projects check it: Snakemake's linter on the paper and demo
# configurations, and snakefmt (line length in pyproject.toml). .ci/run runs it after the tests.
lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint --configfile config/demo.yaml config/study.yaml config/study-cpu.yaml
	$(BIN)/snakefmt --check Snakefile workflow/

# The GPU check (docs/gpu.md): the paper's heaviest kinds of cell in tf32 and bf16 + channels_last (step time, peak
# memory, TFLOP/s), the whole paper's device-hours, bf16 against fp32, the 4 x 2 arithmetic, a deterministic cell;
# gpu_check.json written as each check ends, gpu_check_estimate/ beside it. Needs no install: torch, numpy, OpenCV,
# Pillow, pandas, scipy, matplotlib (PyYAML, tqdm, torchvision, jsonschema optional); about 7 minutes within
# GPU_CHECK_BUDGET_S seconds of checks; says so and passes without CUDA.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_BUDGET_S ?= 400
gpu-check:
	PYTHONUNBUFFERED=1 $(GPU_PYTHON) tests/gpu/gpu_check.py --out gpu_check.json --budget-s $(GPU_CHECK_BUDGET_S)
