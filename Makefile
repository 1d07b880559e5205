# One-command entry points. Each target creates .venv on first use (idempotent and quick after).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default
STAMP := $(VENV)/.pds-installed
NB_OUT ?= build/notebooks

.PHONY: setup data browser lint unit test notebooks findings rendered book lab results ship full-shapes clean help

help:
	@echo "make notebooks   run every notebook in the '$(PROFILE)' profile (PROFILE=smoke|default|full)"
	@echo "make test        lint + unit tests + every notebook in the smoke profile + the smoke book"
	@echo "make findings    render the '$(PROFILE)' profile's findings (default: FINDINGS.md) after make notebooks"
	@echo "make rendered    rendered/: the default profile's executed notebooks as Markdown pages, to commit"
	@echo "make book        build/book/: the executed notebooks of '$(PROFILE)' as HTML pages, with the findings"
	@echo "make lab         JupyterLab on notebooks/ with the pds kernel (start with 00_pds_step_by_step.ipynb)"
	@echo "make setup       create .venv and register the 'pds' Jupyter kernel"
	@echo "make data        install Debian's dataset-fashion-mnist when missing (needs root and apt)"
	@echo "make browser     install Debian's chromium and chromium-driver when missing, for the browser tests"
	@echo "make results     recompute the results shipped in data/results/ (hours on a CPU)"
	@echo "make ship        copy what the default profile computed (runs/) into data/results/"
	@echo "make full-shapes every experiment of the full profile at the official shapes, random weights (DEVICE=, BATCH=)"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed, found " + sys.version)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile -r requirements.txt
	$(PY) -m pip install --quiet --no-compile --no-deps k-diffusion==0.1.1.post1
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . || $(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name pds --display-name "Python (pds)" >/dev/null
	@# Byte-compiled on every core (pip compiles on one): where PYTHONDONTWRITEBYTECODE is set, as on the CPU machines,
	@# nothing else writes .pyc files, and every test process would compile torch on import. A file that does not
	@# compile (templates, other Pythons' test data) is skipped, as pip skips it.
	@$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	@touch $(STAMP)

# Fashion-MNIST from Debian (IDX files under $(FASHION_DIR)); never fatal: without it the loaders
# say where they looked and how to get the data, and the tests that need the real files skip.
FASHION_DIR := /usr/share/datasets/fashion-mnist
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST: found in $(FASHION_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
		echo "Fashion-MNIST: apt-get could not install dataset-fashion-mnist"; \
	else \
		echo "Fashion-MNIST: missing; run 'sudo apt-get install dataset-fashion-mnist' or put the IDX files in data/raw/fashion-mnist/"; \
	fi

# Chromium for the tests that open the book and JupyterLab in a real browser; never fatal: without it they skip
# with one line saying so.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "Chromium: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Chromium: installing Debian's chromium and chromium-driver"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } || \
		echo "Chromium: apt-get could not install it; the browser tests skip"; \
	else \
		echo "Chromium: missing, the browser tests skip; run 'sudo apt-get install chromium chromium-driver'"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks notebooks

unit: $(STAMP)
	$(PY) -m pytest -m "not notebook"

# Fashion-MNIST and Chromium install (apt, one after the other) while .venv is built (pip): the two overlap instead of
# adding up. The tests run in two workers of one thread each (pytest-xdist), a test file at a time per worker (its
# tests keep their order), the slowest files first (tests/conftest.py): the smoke notebooks start at once in one, the
# rest goes to the other.
test:
	@mkdir -p build; \
	{ $(MAKE) --no-print-directory data; $(MAKE) --no-print-directory browser; } > build/system-install.log 2>&1 & apt=$$!; \
	$(MAKE) --no-print-directory setup; status=$$?; \
	wait $$apt; cat build/system-install.log; \
	exit $$status
	$(VENV)/bin/ruff check src tests benchmarks notebooks
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

notebooks: $(STAMP) data
	$(PY) -m pds.publish.notebooks --profile $(PROFILE) --out $(NB_OUT)/$(PROFILE)
	$(PY) -m pds.publish.findings compare --profile $(PROFILE) --src $(NB_OUT)/$(PROFILE)
	@echo "findings written to $(NB_OUT)/$(PROFILE)/*.findings.json: 'make findings' renders them, 'make book' builds the book"

# The notebooks write their findings next to their executed copies; the default profile's rendering is FINDINGS.md,
# committed together with the JSON it was rendered from (data/findings/default/).
findings: $(STAMP)
	$(PY) -m pds.publish.findings render --profile $(PROFILE) $(if $(filter default,$(PROFILE)),--commit,)

rendered: $(STAMP)
	$(PY) -m pds.publish.rendered

book: $(STAMP)
	$(PY) -m pds.publish.book --profile $(PROFILE) --src $(NB_OUT)/$(PROFILE) --out build/book

# JupyterLab for teaching: the notebooks with the pds kernel; the playground of notebook 00 runs live here.
lab: $(STAMP) data
	$(VENV)/bin/jupyter lab --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# The default profile's sample-quality runs (notebooks 05, 06, 09, 10, 11, 12) are shipped in data/results/quality/default
# compactly (every run's numbers and image statistics, its first 32 samples; notebook 12's searches in
# data/results/optimal/default) so that a fresh clone reads them; their
# cache keys hold behaviour fingerprints of the code (pds.lab.cache), so after a numerical change there the notebooks
# recompute them (hours on a 2-core CPU; tests/test_cache.py says so first for one run of each kind, `python -m pds.lab.recompute
# found` for every run) and this target refreshes the shipped copy.
# Beside them: notebook 13's r² tables, calibrations and error spectra (data/results/network_like/default), the exact
# results of notebooks 03, 10, 12 and 14 (data/results/exact/default) and notebook 02's filter-estimation errors
# (data/results/filters/default), each found by the fingerprints of what it depends on.
RESULTS := data/results/quality/default
results: $(STAMP) data
	rm -rf $(RESULTS) runs/quality/default
	rm -rf data/results/optimal/default runs/optimal/default
	rm -rf data/results/network_like/default runs/network_like/default data/results/exact/default runs/exact/default
	rm -rf data/results/filters/default runs/filters/default
	OMP_NUM_THREADS=1 $(PY) -m pds.publish.notebooks --profile default 02 03 05 06 09 10 11 12 13 14
	$(MAKE) --no-print-directory ship

# Copy what the default profile computed into data/results/ (merged with what is there).
ship: $(STAMP)
	$(PY) -c "from pds.lab.cache import ship_cache; print(ship_cache('runs/quality/default', '$(RESULTS)'))"
	$(PY) -c "from pds.lab.optima import OptimumStore; print(OptimumStore('runs/optimal/default').ship('data/results/optimal/default'))"
	$(PY) -c "from pds.lab.store import Store; print(Store('runs/network_like/default', name='tables').ship('data/results/network_like/default'))"
	$(PY) -c "from pds.lessons.exact_results import ExactResults; print(ExactResults('runs/exact/default').ship('data/results/exact/default'))"
	$(PY) -c "from pds.lab.store import Store; print(Store('runs/filters/default', name='errors').ship('data/results/filters/default'))"
	$(PY) -m pds.lab.recompute found  # every shipped run rebuilt from its record and found by the current code

# Every experiment of the full profile at the official network configurations and image sizes, with random weights in
# the official layouts (written into build/full_shapes/, never shipped), one iteration each, vanilla and PDS, and one
# pds sample shard: the table of seconds per iteration and peak memory (python -m pds.lessons.shapes --help).
DEVICE ?= cpu
BATCH ?= 1
full-shapes: $(STAMP)
	$(PY) -m pds.lessons.shapes --device $(DEVICE) --batch $(BATCH) --json build/full_shapes/table-$(DEVICE)-batch$(BATCH).json

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
