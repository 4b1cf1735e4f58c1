# `make run` serves the API on 127.0.0.1:$(PORT); `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8000
# pytest workers for `make test` (pytest-xdist): `auto` is one per core, 0 runs the suite in this process.
TEST_WORKERS ?= auto
BIN := $(VENV)/bin
# Every install comes from a lock that pins and hashes every package (`make lock` writes them):
# requirements.txt serves; requirements-train.txt adds training and reports; requirements-dev.txt adds the tests.
# The Dockerfile runs this same install command (tests/test_packaging.py checks it).
INSTALL := pip install --require-hashes --no-cache-dir -r requirements.txt
# `make lock` rewrites the locks from the .in files, from PyPI alone, keeping every pin it can;
# `make lock UPGRADE=--upgrade` moves every package to its newest allowed release.
UPGRADE ?=
LOCK = $(BIN)/uv pip compile --quiet --no-config --default-index https://pypi.org/simple --universal \
	--python-version 3.11 --generate-hashes --custom-compile-command "make lock" $(UPGRADE)

.PHONY: run test lint venv train-deps dev lock clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/$(INSTALL)
	touch $@

$(VENV)/.train: requirements-train.txt $(VENV)/.runtime
	$(BIN)/pip install --require-hashes --no-cache-dir -r requirements-train.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.train
	$(BIN)/pip install --require-hashes --no-cache-dir -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime

# What `train`, `evaluate --report` and `retrain` need beyond serving: matplotlib and the sentence encoder.
train-deps: $(VENV)/.train

dev: $(VENV)/.dev

run: $(VENV)/.runtime
	PATH="$(abspath $(BIN)):$$PATH" PORT=$(PORT) ./boot.sh

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# Each lock is compiled with the one below as a constraint, so a package shared by two has one version.
lock: $(VENV)/.dev
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) -c requirements.txt requirements-train.in -o requirements-train.txt
	$(LOCK) -c requirements-train.txt requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) instance .pytest_cache
