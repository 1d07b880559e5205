# One-command entry points. Each target creates .venv on first use (idempotent and quick after).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default
STAMP := $(VENV)/.pds-installed
NB_OUT ?= build/notebooks

.PHONY: setup lint unit test notebooks clean help

help:
	@echo "make notebooks   run every notebook in the '$(PROFILE)' profile (PROFILE=smoke|default|full)"
	@echo "make test        lint + unit tests + every notebook in the smoke profile"
	@echo "make setup       create .venv and register the 'pds' Jupyter kernel"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed, found " + sys.version)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . || $(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name pds --display-name "Python (pds)" >/dev/null
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check pds tests benchmarks notebooks

unit: $(STAMP)
	$(PY) -m pytest -m "not notebook"

test: $(STAMP)
	$(VENV)/bin/ruff check pds tests benchmarks notebooks
	$(PY) -m pytest

notebooks: $(STAMP)
	$(PY) -m pds.notebooks --profile $(PROFILE) --out $(NB_OUT)/$(PROFILE)

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
