# One entry point for humans and CI. `make test` is the command README.md and .ci/run use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Where `make run` keeps its data unless TIERGATE_DATA_DIR is set in the environment.
DATA   ?= ./data
# What each use installs (pyproject extras): running the gateway needs the server and the
# engine; the tests need everything (dev pulls server, engine and s3 in).
RUN_EXTRAS := server,engine
DEV_EXTRAS := dev
RUN_STAMP  := $(VENV)/.installed-run
DEV_STAMP  := $(VENV)/.installed-dev

.PHONY: install install-run run test lint typecheck layers deps unit clean

define pip_install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the local CPU wheel, so no resolver ever pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[$(1)]' torch==2.13.0
endef

$(RUN_STAMP): pyproject.toml
	$(call pip_install,$(RUN_EXTRAS))
	touch $@

$(DEV_STAMP): pyproject.toml
	$(call pip_install,$(DEV_EXTRAS))
	touch $@ $(RUN_STAMP)

install-run: $(RUN_STAMP)

install: $(DEV_STAMP)

# TIERGATE_DATA_DIR from the environment wins; DATA is only the default.
run: install-run
	TIERGATE_DATA_DIR="$${TIERGATE_DATA_DIR:-$(DATA)}" $(BIN)/tiergate serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/python -m gateway.tools.check_layers

# Every imported distribution is declared in pyproject.toml, in a group its part may use.
deps: install
	$(BIN)/python -m gateway.tools.check_deps

unit: install
	$(BIN)/python -m pytest

test: lint typecheck layers deps unit

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
