# Entry points: make run, make test, make lint, make bench. Each creates .venv and installs the
# project into it when missing, so on a fresh machine these commands are the whole set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WFM_PORT ?= 8080
export WFM_PORT

.PHONY: run test lint format bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/workflow-manager serve

# Lint first, so that a wrong import (import-linter's contracts in pyproject.toml) fails the tests.
# The HTTP suites run a second time with the DynamoDB store (on the embedded emulator). The first
# run is spread over TEST_PROCESSES processes (pytest-xdist), each with its own emulator and app;
# the second runs in one, as parallel processes made it no faster (the emulator's DynamoDB is the
# bottleneck) and its burst test (100 starts at once) ran into the request timeout.
TEST_PROCESSES ?= 2
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES)
	WFM_STORE=dynamodb $(BIN)/python -m pytest -q tests/test_api.py tests/test_api_batch.py tests/test_examples.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The DynamoDB store's bench, then the scale run (bench/scale.py; SCALE_WORKFLOWS=10000 for the goal's size).
SCALE_WORKFLOWS ?= 300
bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.scale --workflows $(SCALE_WORKFLOWS)

clean:
	rm -rf $(VENV) build *.egg-info
