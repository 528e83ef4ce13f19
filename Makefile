# Every target sets itself up: a fresh clone needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIPFLAGS := --disable-pip-version-check -q -c constraints.txt

.PHONY: test test-fast test-pip demo bench lint setup setup-app setup-bench clean

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

## The whole suite (what CI runs): two pytest workers, one test file each at a time (a file's
## servers and pages stay in one worker); torch one thread per worker, so two never fight.
test: $(VENV)/.test
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder

## Everything but the slow tests.
test-fast: $(VENV)/.test
	$(PY) -m pytest -q -m "not slow"

## The README's pip path in a venv of its own: install from a git URL and editable, import, run
## the quickstart headless (.ci/pip-path; torch comes from .venv, as from a user's environment).
test-pip: $(VENV)/.test
	SEED_VENV=$(VENV) PYTHON=$(PYTHON) bash .ci/pip-path

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .

## JupyterLab on working copies of the notebooks in .demo/ (git-ignored: running and saving them
## leaves `git status` clean; a copy is made only where none exists, so your edits stay; delete
## .demo/ to start again from notebooks/). ARGS go to JupyterLab:
##   make demo ARGS="--port 8899 --no-browser --IdentityProvider.token=secret"
demo: $(VENV)/.app
	@mkdir -p .demo
	@for nb in notebooks/*.ipynb; do [ -e ".demo/$${nb##*/}" ] || cp "$$nb" .demo/; done
	cd .demo && $(abspath $(VENV))/bin/jupyter lab quickstart.ipynb \
		$(if $(filter 0,$(shell id -u)),--allow-root,) $(ARGS)

## Benchmarks: tables of medians and ratios against plain torch and the peers.
bench: $(VENV)/.bench
	$(PY) benchmarks/bench_projection.py
	$(PY) benchmarks/bench_dashboard.py
	$(PY) benchmarks/bench_scrubber.py
	$(PY) benchmarks/bench_shapes.py
	$(PY) benchmarks/bench_checkpoints.py
	$(PY) benchmarks/bench_topk.py
	$(PY) benchmarks/bench_analyses.py
	$(PY) benchmarks/bench_histogram.py
	$(PY) benchmarks/bench_maximize.py
	$(PY) benchmarks/bench_receptive_crop.py
	$(PY) benchmarks/bench_browser.py
	$(PY) benchmarks/bench_camera.py
	$(PY) benchmarks/bench_relu_calls.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
