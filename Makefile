# One command to run, one to test. Everything installs into .venv from PyPI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast lint install clean schemas bench lock lock-upgrade test-deploy deploy-secrets scale-test

# Reproducible: every package (pip and setuptools included) comes from the hashed dev lock; the project
# itself is installed without resolving anything (`make lock` after changing pyproject.toml's dependencies).
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The project's packages (pyproject.toml's include list); compiled to bytecode at install so the first
# workflow runs and process starts do not compile them (quick when nothing changed: compileall checks mtimes).
PACKAGES := activities core workflows worker vault gateway store sandbox

install: $(VENV)/.installed
	$(PY) -m compileall -q -j 0 $(PACKAGES)

run: install ## start the local stack, seed the demo organization, run every demo; Ctrl-C stops
	$(PY) -m worker.dev

test: install ## the whole suite (starts Temporal, OpenBao, sandbox and gateway itself)
	$(PY) -m pytest -q

test-fast: install ## quick feedback: tests that start no services or processes (not marked `stack` or `slow`)
	$(PY) -m pytest -q -m "not stack and not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy core activities workflows worker vault gateway store sandbox
	$(VENV)/bin/lint-imports

schemas: install ## docs/schemas, then the TypeScript client's types generated from them
	$(VENV)/bin/osi schema export --out docs/schemas
	cd clients/typescript && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run generate

# Three worker processes, the gateway, PostgreSQL and Redis; prints the measurements (also part of `make test`).
# OSI_SCALE_RECIPIENTS, OSI_SCALE_SINGLES, OSI_SCALE_MPS, OSI_SCALE_WEBHOOKS=1 change the load;
# OSI_SCALE_STRICT_DUPLICATES=1 fails on a message sent twice after the kill; OSI_SCALE_LOGS=<dir> keeps the logs.
scale-test: install
	$(PY) -m pytest -q -s -m scale tests/test_scale_out.py

# Every benchmark under bench/ at realistic sizes, one after another (about 10 minutes); the table goes into
# docs/performance.md between its markers. `$(PY) bench/report.py --only per_event --no-write` runs one.
bench: install
	$(PY) bench/report.py

clean:
	rm -rf .data

# Hashed lock files, resolved for CPython 3.11 on Linux (this machine, CI and the Docker image). Re-run after
# adding or changing a dependency in pyproject.toml: pins already in the locks are kept, new ones are added.
# `make lock-upgrade` moves every pin to the newest allowed release. No index URL is written into the files.
LOCK_FLAGS := --quiet --generate-hashes --no-emit-index-url --no-emit-find-links --allow-unsafe --strip-extras \
	--all-build-deps
lock: install ## regenerate requirements.lock (runtime) and requirements-dev.lock (runtime pins + dev/test tools)
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) $(LOCK_EXTRA) \
		--output-file requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) $(LOCK_EXTRA) --extra dev \
		--constraint requirements.lock --output-file requirements-dev.lock pyproject.toml

lock-upgrade:
	$(MAKE) lock LOCK_EXTRA=--upgrade

test-deploy: install ## lock files, Dockerfile, compose file, PostgreSQL roles, Vault server/bootstrap/renewal
	$(PY) -m pytest -q $(wildcard tests/test_deploy_*.py) tests/test_vault_server.py tests/test_vault_renewal.py \
		tests/test_temporal_tls.py tests/test_worker_process.py tests/test_vault_approle_worker.py

deploy-secrets: ## random passwords and keys for docker-compose.yml under deploy/secrets/ (kept if present)
	sh deploy/gen-secrets.sh
