# freshtoken: `make run` starts the service on the embedded default; `make test` runs every test.
# Both create .venv and install the project (with its test extras) on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install freshtoken with its test extras

run: $(STAMP) ## run API (+ worker and beat) on SQLite with no Redis: the zero-setup default
	$(VENV)/bin/freshtoken dev

demo: $(STAMP) ## like run, plus the mock provider and demo connections with 2-minute tokens
	$(VENV)/bin/freshtoken dev --demo

test: $(STAMP) ## run every test (integration tests need PostgreSQL and Redis; see README)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

fmt: $(STAMP) ## format and auto-fix
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

bench: $(STAMP) ## run the benchmarks and write docs/benchmarks.md (BENCH_ARGS="--only read_path")
	$(PY) -m benchmarks.run $(BENCH_ARGS)

.PHONY: help install run demo test lint fmt bench
