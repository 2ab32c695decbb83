# Everything needs only python3 and make: the first target run creates .venv and installs what it needs.
# `make run` installs the runtime with every backend driver (.[all]); `make test` adds the dev tools (.[dev]:
# pytest, ruff, mypy, the Kafka test broker, perf's charts), which a sidecar never needs.
VENV      := .venv
BIN       := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run-stamp
STAMP     := $(VENV)/.installed-stamp

.PHONY: run test lint install install-run help
help:
	@echo "make run   - start the sidecar on the embedded default components (ARGS='--app-id x ...')"
	@echo "make test  - lint, type-check and run the whole test suite"

$(BIN)/python:
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

install-run: $(RUN_STAMP)
install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/layotto run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)
