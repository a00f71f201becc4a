# Template maintenance. Needs only python3, git and make: uv and the dev tools are
# installed into .venv on first use.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO_DIR := build/demo
DEMO := $(DEMO_DIR)/my-ml-service
DEMO_PORT ?= 8765
# Parallel test workers; the machines we target have 2 cores.
WORKERS ?= 2

.PHONY: help install system-tools demo test test-fast lint bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv

$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --group dev
	@touch $@

install: $(VENV)/.installed ## Create .venv with the template's dev and test tools

system-tools: ## Install the Debian packages the tests and benchmarks run (podman, PostgreSQL, Prometheus' tools, wrk)
	@scripts/system-tools.sh
	@command -v kubectl >/dev/null || echo "warning: kubectl not found; the kustomize tests will fail" >&2

# GIT_CEILING_DIRECTORIES keeps git from seeing this repository above build/, so the
# demo gets its own repository exactly as a user's fresh render does.
demo: install ## Render the default project into build/demo, install, test and run its pipeline
	rm -rf $(DEMO_DIR)
	GIT_CEILING_DIRECTORIES=$(CURDIR)/build $(BIN)/cookiecutter --no-input --output-dir $(DEMO_DIR) .
	cd $(DEMO) && PATH="$(BIN):$$PATH" $(MAKE) --no-print-directory setup lint test pipeline models export-model
	cd $(DEMO) && { MODEL_DIR=build/model PORT=$(DEMO_PORT) .venv/bin/my-ml-service serve 2>/dev/null & \
	  server=$$!; .venv/bin/my-ml-service smoke --url http://127.0.0.1:$(DEMO_PORT) --wait 60; \
	  status=$$?; kill $$server; exit $$status; }
	@echo; echo "Demo project: $(DEMO)"
	@echo "test metrics (metrics/test.json):"; cat $(DEMO)/metrics/test.json
	@echo "registration (reports/registration.json):"; cat $(DEMO)/reports/registration.json
	@echo "next: cd $(DEMO) && make help   (make mlflow-ui shows the run and the registry)"

test: install system-tools ## The whole template suite: structural tests, end-to-end installs, images
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup --durations=30

test-fast: install ## Structural tests only (no project installs)
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup -m "not e2e"

lint: install ## ruff and mypy on the hooks, the prompt checks and the tests
	$(BIN)/ruff check hooks tests bench local_extensions.py
	$(BIN)/ruff format --check hooks tests bench local_extensions.py
	$(BIN)/mypy hooks tests bench local_extensions.py

bench: install system-tools ## Benchmarks of the rendered project (figures for the README)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/batch.py

clean: ## Remove .venv and build/
	rm -rf $(VENV) build
