"""tiergate's watermark as a vLLM v1 logits processor.

Start the engine with the key set on a secret mount::

    TIERGATE_WATERMARK_KEYSET=/run/secrets/tiergate-keys.json \\
    vllm serve MODEL --logits-processors watermark.vllm_plugin:TiergateWatermarkLogitsProcessor

A request is watermarked when its ``SamplingParams.extra_args`` (the OpenAI server's
``vllm_xargs``) carry ``tiergate_key_id`` (and ``tiergate_payload``, the call tag, when that
key's config has a payload); every other request is left untouched. The key set (see
:mod:`watermark.keyset`) holds each key's secret and config, so a request never carries
key material. The path comes from the environment because vLLM runs ``validate_params`` in
the API server process, which has no engine config: that is where a request naming an
unknown key id, or a malformed payload, is refused (HTTP 400) before any token is sampled.

Only this module imports vLLM; the machinery is in :mod:`watermark._private.engine_rows`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

# vLLM is installed only in the engine's environment, where this module runs.
from vllm.v1.sample.logits_processor import LogitsProcessor  # type: ignore[import-not-found]

from watermark._private.engine_rows import ARG_KEY_ID, ARG_PAYLOAD, RowTable, parse_request
from watermark.errors import WatermarkError, WatermarkKeyError
from watermark.keyset import WatermarkKeySet, load_keyset

if TYPE_CHECKING:
    import torch
    from vllm import SamplingParams  # type: ignore[import-not-found]
    from vllm.config import VllmConfig  # type: ignore[import-not-found]
    from vllm.v1.sample.logits_processor import BatchUpdate

__all__ = ["ARG_KEY_ID", "ARG_PAYLOAD", "KEYSET_ENV", "TiergateWatermarkLogitsProcessor"]

KEYSET_ENV = "TIERGATE_WATERMARK_KEYSET"

_lock = threading.Lock()
_loaded: dict[str, WatermarkKeySet] = {}


def _keyset() -> WatermarkKeySet | None:
    """The key set named by the environment, read once per process (None when unset)."""
    path = os.environ.get(KEYSET_ENV)
    if not path:
        return None
    with _lock:
        found = _loaded.get(path)
        if found is None:
            found = _loaded[path] = load_keyset(path)
    return found


def _temperature(params: Any) -> float:
    value = getattr(params, "temperature", 1.0)
    return float(value) if value is not None else 1.0


class TiergateWatermarkLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
    """Applies ``tg-kgw-v1`` to the rows of tagged requests; greedy ones too, so not
    argmax-invariant."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        try:
            parse_request(sampling_params.extra_args, _temperature(sampling_params), _keyset())
        except WatermarkError as exc:
            # vLLM answers a ValueError from here with HTTP 400 and this message.
            raise ValueError(f"tiergate watermark: {exc.message}") from None

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        keyset = _keyset()
        vocab = int(vllm_config.model_config.get_vocab_size())
        if keyset is not None:
            for entry in keyset:
                if entry.config.vocab_size != vocab:
                    # A key made for another model: refuse to start rather than bias the
                    # wrong columns (the engine then fails its start-up with this message).
                    raise WatermarkKeyError(
                        f"key {entry.key.key_id} is configured for a vocabulary of "
                        f"{entry.config.vocab_size} tokens; this model has {vocab}"
                    )
        self._rows = RowTable(
            lambda params: parse_request(params.extra_args, _temperature(params), keyset),
            eos_ids=_eos_ids(vllm_config),
        )
        # Load (or compile) the CPU kernel now, not on the first tagged request.
        if device.type == "cpu" and keyset is not None:
            from watermark.processor import prepare_cpu_kernel

            prepare_cpu_kernel()

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        self._rows.update(batch_update.removed, batch_update.added, batch_update.moved)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return self._rows.apply(logits)  # type: ignore[no-any-return]


def _eos_ids(vllm_config: Any) -> list[int]:
    ids: set[int] = set()
    model_config = vllm_config.model_config
    sources = [getattr(model_config, "hf_text_config", None)]
    # A generation config that cannot be read only narrows the set.
    with contextlib.suppress(Exception):
        sources.append(model_config.try_get_generation_config())
    for source in sources:
        value = (
            source.get("eos_token_id")
            if isinstance(source, dict)
            else getattr(source, "eos_token_id", None)
        )
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return sorted(ids)
