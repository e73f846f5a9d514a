# The one way to run everything. `make run` and `make test` do all their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: run test test-fast test-unit test-storage lint typecheck check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first, pinned, so nothing later pulls a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mailray run

test: $(STAMP)
	$(PYTEST) -q -rfE

test-fast: $(STAMP)
	$(PYTEST) -q -rfE -m "not slow"

test-unit: $(STAMP)
	$(PYTEST) -q -rfE tests/unit

test-storage: $(STAMP)
	$(PYTEST) -q -rfE -m storage

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mailray .pytest_cache .mypy_cache .ruff_cache
