# freshtoken: `make run` starts the service on the embedded default; `make test` runs every test.
# Both create .venv on first use: `run` installs what running needs, `test`/`lint` add the test
# extras (pytest, schemathesis, mypy, ...).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HASH := $(shell sha1sum pyproject.toml | cut -c1-12)
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
# `make run PORT=3010` (default: FRESHTOKEN_API_PORT, else 3003).
PORT ?=
PORT_ARG := $(if $(PORT),--port $(PORT))

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(RUN_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@rm -f $(VENV)/.installed-run-* && touch $@

$(TEST_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

install: $(TEST_STAMP) ## create .venv and install freshtoken with its test extras

run: $(RUN_STAMP) ## run API (+ worker and beat) on SQLite with no Redis (PORT=3010 to move it)
	$(VENV)/bin/freshtoken dev $(PORT_ARG)

demo: $(RUN_STAMP) ## like run, plus the mock provider and demo connections with 2-minute tokens
	$(VENV)/bin/freshtoken dev --demo $(PORT_ARG)

test: $(TEST_STAMP) ## run every test (integration tests need PostgreSQL and Redis; see README)
	$(PY) -m pytest $(PYTEST_ARGS)

# By marker, which tests/unit/test_tests_layout.py keeps in line with the directories:
# `integration` tests live in tests/integration (and the browser tests in tests/connect_browser).
test-unit: $(TEST_STAMP) ## run the tests that need no PostgreSQL or Redis
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: $(TEST_STAMP) ## run only the integration tests (real PostgreSQL and Redis)
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

lint: $(TEST_STAMP) ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

fmt: $(TEST_STAMP) ## format and auto-fix
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

bench: $(TEST_STAMP) ## run the benchmarks and write docs/benchmarks.md (BENCH_ARGS="--only read_path")
	$(PY) -m benchmarks.run $(BENCH_ARGS)

.PHONY: help install run demo test test-unit test-integration lint fmt bench
