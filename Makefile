# One command to run, one to test. Everything installs into .venv from PyPI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint install clean schemas bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install ## start the local stack, seed the demo organization, run every demo; Ctrl-C stops
	$(PY) -m worker.dev

test: install ## the whole suite (starts Temporal, OpenBao, sandbox and gateway itself)
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy activities workflows worker vault gateway store sandbox

schemas: install
	$(VENV)/bin/osi schema export --out docs/schemas

bench: install
	$(PY) bench/whatsapp_bulk.py

clean:
	rm -rf .data
