# Quickstart: `make demo` (install + run the demo), `make test` (install + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck check bench install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q '.[test]'

demo: $(BIN)/python
	$(BIN)/python -m pip install -q .
	$(BIN)/tanpuhui demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy -p tanpuhui.sdk -p tanpuhui.testing -p tanpuhui.hub -p tanpuhui.adapters -p tanpuhui.schemas

check: test lint typecheck

bench: install  # the performance table (docs/performance.md); e.g. make bench ARGS="--quick" or ARGS="--only pull"
	$(BIN)/python -m benchmarks $(ARGS)
