# Every target sets itself up: a fresh clone needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIPFLAGS := --disable-pip-version-check -q -c constraints.txt

.PHONY: test test-fast demo bench lint setup setup-app setup-bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.test: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIPFLAGS) -e '.[test]'
	@touch $@

$(VENV)/.app: $(VENV)/.test
	$(PIP) install $(PIPFLAGS) -e '.[test,app]'
	@touch $@

$(VENV)/.bench: $(VENV)/.test
	$(PIP) install $(PIPFLAGS) -e '.[test,bench]'
	@touch $@

setup: $(VENV)/.test
setup-app: $(VENV)/.app
setup-bench: $(VENV)/.bench

## The whole suite (what CI runs).
test: $(VENV)/.test
	$(PY) -m pytest -q -rs

## Everything but the slow tests.
test-fast: $(VENV)/.test
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .

## JupyterLab on the quickstart notebook.
demo: $(VENV)/.app
	$(VENV)/bin/jupyter lab notebooks/quickstart.ipynb $(if $(filter 0,$(shell id -u)),--allow-root,)

## Benchmarks: tables of medians and ratios against plain torch and the peers.
bench: $(VENV)/.bench
	$(PY) benchmarks/bench_projection.py
	$(PY) benchmarks/bench_dashboard.py
	$(PY) benchmarks/bench_scrubber.py
	$(PY) benchmarks/bench_shapes.py
	$(PY) benchmarks/bench_checkpoints.py
	$(PY) benchmarks/bench_analyses.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
