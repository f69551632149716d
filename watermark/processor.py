"""The sampling-time side: bias favoured logits, vectorized over batch x vocab, torch lazily.

Use :func:`build_logits_processors` with ``model.generate(..., do_sample=True, temperature=1.0,
top_k=0, top_p=1.0, logits_processor=...)``: transformers runs custom processors *before* its own
temperature/top-k/top-p warpers, so the list puts those warpers first and the watermark last.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from watermark._private.cpu_kernel import fused_bias_kernel
from watermark._private.np_prf import tables_for
from watermark._private.scoring import check_key
from watermark.config import WatermarkConfig
from watermark.errors import (
    BackendUnavailableError,
    InvalidLogitsError,
    InvalidTokensError,
    PayloadError,
    VocabMismatchError,
)
from watermark.keys import WatermarkKey
from watermark.payload import payload_symbols
from watermark.prf import threshold32

if TYPE_CHECKING:
    import torch

    from watermark._private.torch_prf import DeviceTables

__all__ = [
    "GreenListProcessor",
    "apply_watermark",
    "build_logits_processors",
    "prepare_cpu_kernel",
]


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the full install
        raise BackendUnavailableError("applying a watermark needs torch") from None
    return torch


class GreenListProcessor:
    """Adds ``delta`` to the logits of favoured candidates; callable as ``(input_ids, scores)``.

    ``payload`` (one int, or one per batch row) turns on the multi-bit scheme of the config.
    Tables are built once per device; a step is a few B-sized gathers and four vectorized
    B x V ops (multiply, add, compare, add): no loop over rows, no host sync. Rows with fewer
    than ``context_width`` tokens are left unbiased, matching the detector, which skips them.
    Non-finite logits pass through unchanged in kind (-inf stays masked) unless
    ``check_finite`` is set, which costs one host sync per step.
    """

    def __init__(
        self,
        config: WatermarkConfig,
        key: WatermarkKey,
        *,
        payload: int | Sequence[int] | None = None,
        inplace: bool = False,
        check_finite: bool = False,
    ) -> None:
        check_key(config, key)
        self.config = config
        self.inplace = inplace
        self.check_finite = check_finite
        self._tables = tables_for(key.key64, config.vocab_size, config.context_width)
        self._device_tables: dict[str, DeviceTables] = {}
        self._symbol_tensors: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        # Per-thread scratch for the B x V mask: reusing it avoids a fresh allocation (and on
        # CPU, page faults) every step; per thread because one processor may serve many.
        self._scratch = threading.local()
        self._symbols: tuple[tuple[int, ...], ...] | None = None
        if payload is not None:
            if config.payload is None:
                raise PayloadError("a payload needs a config with payload settings")
            rows = [payload] if isinstance(payload, int) else list(payload)
            if not rows:
                raise PayloadError("payload list is empty")
            self._symbols = tuple(payload_symbols(p, config.payload) for p in rows)
        elif config.payload is not None:
            raise PayloadError("this config carries a payload; pass payload=")
        self._threshold = threshold32(config.gamma)
        # What the fused CPU kernel reads, prepared once: the candidate words as int32 (a view
        # of the shared table), one row of payload symbols per batch row (a dummy without a
        # payload) and the shift that turns a symbol into its list's offset.
        self._t32_signed = self._tables.t32.view(np.int32)
        self._symbol_rows = np.array(self._symbols or ((0,),), dtype=np.int64)
        self._symbol_shift = 32 - config.payload.bits_per_symbol if config.payload else 0

    def _tables_on(self, device: torch.device) -> DeviceTables:
        name = str(device)
        found = self._device_tables.get(name)
        if found is None:
            from watermark._private.torch_prf import device_tables

            with self._lock:
                found = self._device_tables.get(name)
                if found is None:
                    found = device_tables(self._tables, device, self_seeded=self.config.self_seeded)
                    self._device_tables[name] = found
        return found

    def _offsets(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        from watermark._private.torch_prf import slot_index

        th = _torch()
        settings = self.config.payload
        assert settings is not None
        assert self._symbols is not None
        name = str(x.device)
        symbols = self._symbol_tensors.get(name)
        if symbols is None:
            symbols = th.tensor(self._symbols, dtype=th.int64, device=x.device)
            self._symbol_tensors[name] = symbols
        rows = symbols.shape[0]
        if rows not in (1, batch):
            raise PayloadError(f"{rows} payloads for a batch of {batch} rows")
        slot = slot_index(x, settings.num_slots)
        chosen = symbols.expand(batch, -1).gather(1, slot.unsqueeze(1)).squeeze(1)
        result: torch.Tensor = chosen << (32 - settings.bits_per_symbol)
        return result

    def _scratch_for(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        th = _torch()
        found: tuple[torch.Tensor, torch.Tensor] | None = getattr(self._scratch, "buffers", None)
        if (
            found is None
            or found[1].shape != scores.shape
            or found[1].dtype != scores.dtype
            or found[1].device != scores.device
        ):
            found = (
                th.empty(scores.shape, dtype=th.int32, device=scores.device),
                th.empty(scores.shape, dtype=scores.dtype, device=scores.device),
            )
            self._scratch.buffers = found
        return found

    def _validate(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        th = _torch()
        if not isinstance(scores, th.Tensor) or not isinstance(input_ids, th.Tensor):
            raise InvalidLogitsError("input_ids and scores must be torch tensors")
        if scores.dim() != 2 or not scores.is_floating_point():
            raise InvalidLogitsError(
                f"scores must be a 2-D float tensor, got {tuple(scores.shape)} {scores.dtype}"
            )
        if input_ids.dim() != 2 or input_ids.dtype not in (th.int64, th.int32):
            raise InvalidTokensError("input_ids must be a 2-D integer tensor")
        if input_ids.shape[0] != scores.shape[0]:
            raise InvalidLogitsError(
                f"batch of input_ids ({input_ids.shape[0]}) != batch of scores ({scores.shape[0]})"
            )
        if scores.shape[1] != self.config.vocab_size:
            raise VocabMismatchError(
                f"scores have {scores.shape[1]} columns but the config's vocab size is "
                f"{self.config.vocab_size}"
            )
        if self.check_finite and bool((th.isnan(scores) | (scores == float("inf"))).any()):
            raise InvalidLogitsError("scores contain NaN or +inf")

    def _bias_fused(
        self, kernel: Any, input_ids: torch.Tensor, scores: torch.Tensor
    ) -> torch.Tensor:
        """The whole step in one compiled call (CPU, float32): no torch op per step."""
        h = self.config.context_width
        batch = scores.shape[0]
        symbols = self._symbol_rows
        if self._symbols is not None and symbols.shape[0] not in (1, batch):
            raise PayloadError(f"{symbols.shape[0]} payloads for a batch of {batch} rows")
        context = np.ascontiguousarray(input_ids.numpy()[:, -h:], dtype=np.int64)
        target = scores if self.inplace else scores.clone()
        bad_row = kernel(
            target.numpy(),
            self._t32_signed,
            context,
            self._tables.ctx,
            symbols,
            self._symbols is not None,
            self._symbol_shift,
            np.int32(self._threshold - (1 << 31)),
            np.float32(self.config.delta),
        )
        if bad_row >= 0:
            raise InvalidTokensError(
                f"row {bad_row} of input_ids holds a token id outside the vocabulary "
                f"(0..{self.config.vocab_size - 1})"
            )
        return target

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._validate(input_ids, scores)
        h = self.config.context_width
        if input_ids.shape[1] < h or scores.shape[0] == 0:
            return scores
        from watermark._private.torch_prf import context_x, favoured_left, favoured_self

        if not self.config.self_seeded and _fused_path_ok(scores):
            kernel = fused_bias_kernel()
            if kernel is not None:
                return self._bias_fused(kernel, input_ids, scores)
        input_ids = input_ids.to(_torch().int64)
        tables = self._tables_on(scores.device)
        x = offset = None
        if self._symbols is not None:
            x = context_x(input_ids, tables, h)
            offset = self._offsets(x, scores.shape[0])
        if self.config.self_seeded:
            mask = favoured_self(input_ids, tables, h, self._threshold, offset, x)
        else:
            words, floats = self._scratch_for(scores)
            mask = favoured_left(
                input_ids, tables, h, self._threshold, offset, x, words=words, mask=floats
            )
        if self.inplace:
            return scores.add_(mask, alpha=self.config.delta)
        result: torch.Tensor = _torch().add(scores, mask, alpha=self.config.delta)
        return result


def apply_watermark(
    input_ids: torch.Tensor,
    scores: torch.Tensor,
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    payload: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """One-shot form of :class:`GreenListProcessor` (tables are cached per key and vocab)."""
    return GreenListProcessor(config, key, payload=payload)(input_ids, scores)


_hf_class: type | None = None


def _hf_processor_class() -> type:
    global _hf_class
    if _hf_class is None:
        try:
            from transformers import LogitsProcessor
        except ImportError:  # pragma: no cover
            raise BackendUnavailableError("a transformers processor needs transformers") from None
        _hf_class = type(
            "TiergateWatermarkLogitsProcessor", (GreenListProcessor, LogitsProcessor), {}
        )
    return _hf_class


def build_logits_processors(
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    payload: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    inplace: bool | None = None,
) -> Any:
    """A ``transformers.LogitsProcessorList``: temperature, top-k, top-p, then the watermark.

    Call ``generate`` with ``do_sample=True, temperature=1.0, top_k=0, top_p=1.0`` so that
    transformers adds no warpers of its own after the watermark. ``inplace=None`` biases in
    place only when a warper runs first; pass True when ``output_logits`` is off (faster).
    """
    try:
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )
    except ImportError:  # pragma: no cover
        raise BackendUnavailableError("a transformers processor list needs transformers") from None
    processors: list[Any] = []
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p))
    # A warper in front hands us a fresh tensor, so biasing in place cannot touch the raw
    # logits that generate() may keep for output_logits.
    if inplace is None:
        inplace = bool(processors)
    processor = _hf_processor_class()(config, key, payload=payload, inplace=inplace)
    processors.append(processor)
    return LogitsProcessorList(processors)


def _fused_path_ok(scores: torch.Tensor) -> bool:
    """Whether the fused CPU kernel may bias these logits (in place, as float32)."""
    return (
        scores.device.type == "cpu"
        and scores.dtype == _torch().float32
        and scores.is_contiguous()
        and not scores.requires_grad
    )


def prepare_cpu_kernel() -> bool:
    """Load (compiling on first use on this machine) the fused CPU kernel; True if available.

    Call it ahead of time (in a process's start-up, say) so that the first biased step does not
    wait for numba: about 0.5 s from the on-disk cache, a few seconds to compile.
    """
    return fused_bias_kernel() is not None
