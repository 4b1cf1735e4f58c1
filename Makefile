# `make run` serves the API on 127.0.0.1:$(PORT); `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8000
# pytest workers for `make test` (pytest-xdist): `auto` is one per core, 0 runs the suite in this process.
TEST_WORKERS ?= auto
BIN := $(VENV)/bin
# The Dockerfile runs this same install command (tests/test_packaging.py checks it).
INSTALL := pip install --no-cache-dir -r requirements.txt

.PHONY: run test lint venv dev clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/$(INSTALL)
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --no-cache-dir -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime

run: $(VENV)/.runtime
	PATH="$(CURDIR)/$(BIN):$$PATH" PORT=$(PORT) ./boot.sh

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) instance .pytest_cache
