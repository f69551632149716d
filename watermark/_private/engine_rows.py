"""Per-row watermark state of a serving engine's persistent batch, and the per-step bias.

Host-agnostic machinery behind :mod:`watermark.vllm_plugin`: it never imports vLLM, so the
batch bookkeeping (removed, then added, then moved) is testable with fake updates. A row's
context is read from the request's own token lists (prompt + output) at every step, never
accumulated here, so a preempted and recomputed request, a prefix-cache hit or a row moved
by the engine's condense step cannot count a token twice or lose one.

Bits: on CPU with float32 logits each row is biased by the same compiled kernel as the local
engine's processor (:mod:`watermark._private.cpu_kernel`); elsewhere by the same torch ops
(:mod:`watermark._private.torch_prf`), vectorized per group of rows sharing a key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from watermark._private.cpu_kernel import fused_bias_kernel
from watermark._private.np_prf import PrfTables, tables_for
from watermark.config import WatermarkConfig
from watermark.errors import PayloadError, WatermarkConfigError, WatermarkError
from watermark.keyset import KeySetEntry, WatermarkKeySet
from watermark.payload import payload_symbols
from watermark.prf import threshold32

__all__ = [
    "ARG_KEY_ID",
    "ARG_PAYLOAD",
    "GREEDY_EPS",
    "RequestWatermark",
    "RowTable",
    "parse_request",
]

ARG_KEY_ID = "tiergate_key_id"
ARG_PAYLOAD = "tiergate_payload"
_ARGS = frozenset({ARG_KEY_ID, ARG_PAYLOAD})
_PREFIX = "tiergate_"
# vLLM samples greedily below this temperature (vllm/v1/sample/sampler.py).
GREEDY_EPS = 1e-5

_log = logging.getLogger("watermark.vllm")


@dataclass(frozen=True)
class RequestWatermark:
    """What one request asked for: the key's entry, its payload symbols, the applied delta."""

    entry: KeySetEntry
    symbols: tuple[int, ...] | None
    delta: float


def parse_request(
    extra_args: Mapping[str, Any] | None, temperature: float, keyset: WatermarkKeySet | None
) -> RequestWatermark | None:
    """The watermark a request's ``extra_args`` ask for; None for an untagged request.

    Raises a :class:`WatermarkError` for anything malformed, an unknown key id, or a payload
    that the key's config does not expect (or lacks): a request that tried to be watermarked
    must never silently go out plain.

    The engine adds logits processors before temperature, the local engine after it; adding
    ``delta * T`` here makes the sampled distribution the local engine's (top-p/top-k
    aside: vLLM cuts the nucleus after the bias).
    """
    if not extra_args:
        return None
    ours = {k for k in extra_args if isinstance(k, str) and k.startswith(_PREFIX)}
    if not ours:
        return None
    unknown = ours - _ARGS
    if unknown:
        raise WatermarkConfigError(f"unknown tiergate arguments {sorted(unknown)}")
    key_id = extra_args.get(ARG_KEY_ID)
    if not isinstance(key_id, str):
        raise WatermarkConfigError(f"{ARG_KEY_ID} must be given as a string")
    if keyset is None:
        raise WatermarkConfigError("this engine has no watermark key set")
    entry = keyset.find(key_id)
    config = entry.config
    payload = extra_args.get(ARG_PAYLOAD)
    symbols = None
    if config.payload is not None:
        if payload is None:
            raise PayloadError(f"key {key_id} watermarks with a payload; send {ARG_PAYLOAD}")
        symbols = payload_symbols(payload, config.payload)
    elif payload is not None:
        raise PayloadError(f"key {key_id} watermarks without a payload")
    scale = temperature if temperature >= GREEDY_EPS else 1.0
    return RequestWatermark(entry=entry, symbols=symbols, delta=config.delta * scale)


class _Scheme:
    """Tables and constants of one key set entry, built once per engine."""

    def __init__(self, entry: KeySetEntry) -> None:
        config = entry.config
        self.config: WatermarkConfig = config
        self.tables: PrfTables = tables_for(
            entry.key.key64, config.vocab_size, config.context_width
        )
        self.t32_signed = self.tables.t32.view(np.int32)
        self.threshold = threshold32(config.gamma)
        self.limit = np.int32(self.threshold - (1 << 31))
        self.shift = 32 - config.payload.bits_per_symbol if config.payload else 0
        self._device: dict[str, Any] = {}

    def device_tables(self, device: Any) -> Any:
        from watermark._private.torch_prf import device_tables

        name = str(device)
        found = self._device.get(name)
        if found is None:
            found = device_tables(self.tables, device, self_seeded=self.config.self_seeded)
            self._device[name] = found
        return found


@dataclass
class _Row:
    request: RequestWatermark | None  # None: refused (bad arguments that reached the engine)
    prompt: Sequence[int] | None
    output: Sequence[int]  # the engine's live list: it grows as the request decodes
    symbols: npt.NDArray[np.int64] = field(init=False)
    delta32: np.float32 = field(init=False)

    def __post_init__(self) -> None:
        symbols = self.request.symbols if self.request is not None else None
        self.symbols = np.array([symbols or (0,)], dtype=np.int64)
        self.delta32 = np.float32(self.request.delta if self.request is not None else 0.0)

    def context(self, width: int) -> list[int] | None:
        """The last ``width`` tokens before the next one, or None while there are fewer."""
        out = self.output
        if len(out) >= width:
            return list(out[len(out) - width :])
        prompt = self.prompt or ()
        need = width - len(out)
        if len(prompt) < need:
            return None
        return [*prompt[len(prompt) - need :], *out]


Parse = Callable[[Any], RequestWatermark | None]


class RowTable:
    """Watermark state per persistent-batch row, and the bias of one step's logits.

    ``parse(params)`` turns a request's sampling params into its watermark (None: untagged);
    when it raises, the row is *refused*: every logit but the end-of-sequence ones is masked
    so the request ends at once instead of going out unwatermarked (the API server refuses
    such requests before they get here; this is the engine's fail-closed backstop).
    """

    def __init__(self, parse: Parse, eos_ids: Iterable[int] = ()) -> None:
        self._parse = parse
        self._eos = sorted({int(e) for e in eos_ids})
        self.rows: dict[int, _Row] = {}
        self._schemes: dict[str, _Scheme] = {}
        self._warned = False

    def _scheme(self, entry: KeySetEntry) -> _Scheme:
        found = self._schemes.get(entry.key.key_id)
        if found is None:
            found = self._schemes[entry.key.key_id] = _Scheme(entry)
        return found

    # -- the host's contract: removed, then added, then moved -------------------------------

    def update(
        self,
        removed: Iterable[int],
        added: Iterable[tuple[int, Any, Sequence[int] | None, Sequence[int]]],
        moved: Iterable[tuple[int, int, Any]],
    ) -> None:
        for index in removed:
            self.rows.pop(index, None)
        for index, params, prompt, output in added:
            # An added request may take the slot of one that left without a "removed" entry.
            self.rows.pop(index, None)
            try:
                request = self._parse(params)
            except WatermarkError as exc:
                _log.error("refusing a request in the engine: %s", exc.message)
                self.rows[index] = _Row(None, prompt, output)
                continue
            if request is not None:
                self._scheme(request.entry)
                self.rows[index] = _Row(request, prompt, output)
        for source, target, direction in moved:
            a = self.rows.pop(source, None)
            b = self.rows.pop(target, None)
            if a is not None:
                self.rows[target] = a
            if b is not None and _is_swap(direction):
                self.rows[source] = b

    # -- one step ----------------------------------------------------------------------------

    def apply(self, logits: Any) -> Any:
        """Bias (in place) the rows of ``logits`` that carry a watermark; returns ``logits``."""
        if not self.rows:
            return logits
        batch, vocab = int(logits.shape[0]), int(logits.shape[1])
        groups: dict[str, list[tuple[int, _Row, list[int]]]] = {}
        for index, row in self.rows.items():
            if index >= batch:
                continue
            if row.request is None:
                self._refuse(logits, index)
                continue
            config = row.request.entry.config
            if config.vocab_size != vocab:
                self._warn(f"logits have {vocab} columns, key expects {config.vocab_size}")
                self._refuse(logits, index)
                continue
            context = row.context(config.context_width)
            if context is None:
                continue  # too short for a full context: unbiased, as the detector skips it
            if not all(0 <= t < vocab for t in context):
                # vLLM fills placeholders before custom processors run; never seen, but an
                # index outside the tables must not crash the engine.
                self._warn(f"row {index} holds a token id outside the vocabulary")
                continue
            groups.setdefault(config.key_id, []).append((index, row, context))
        for key_id, members in groups.items():
            scheme = self._schemes[key_id]
            if _fused_ok(logits) and not scheme.config.self_seeded:
                kernel = fused_bias_kernel()
                if kernel is not None:
                    _bias_rows_fused(kernel, scheme, logits, members)
                    continue
            _bias_rows_torch(scheme, logits, members)
        return logits

    def _refuse(self, logits: Any, index: int) -> None:
        row = logits[index]
        row.fill_(float("-inf"))
        # Only end-of-sequence is left to sample (token 0 when the model names none, so the
        # row stays a distribution): the request ends now rather than going out plain.
        keep = [e for e in self._eos if e < row.shape[0]] or [0]
        row[keep] = 0.0

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            _log.warning("tiergate watermark: %s", message)


def _is_swap(direction: Any) -> bool:
    return bool(getattr(direction, "name", direction) == "SWAP")


def _fused_ok(logits: Any) -> bool:
    import torch

    return bool(
        logits.device.type == "cpu"
        and logits.dtype == torch.float32
        and logits.is_contiguous()
        and not logits.requires_grad
    )


def _bias_rows_fused(
    kernel: Any, scheme: _Scheme, logits: Any, members: list[tuple[int, _Row, list[int]]]
) -> None:
    """The local engine's compiled kernel: one call for a whole batch of one key and one
    delta (the gateway's usual traffic), else one call per row on a view of that row."""
    scores = logits.detach().numpy()
    with_payload = scheme.config.payload is not None
    delta = members[0][1].delta32
    if (
        len(members) == scores.shape[0]
        and all(m[0] == i for i, m in enumerate(sorted(members, key=lambda m: m[0])))
        and all(m[1].delta32 == delta for m in members)
    ):
        ordered = sorted(members, key=lambda m: m[0])
        kernel(
            scores,
            scheme.t32_signed,
            np.array([m[2] for m in ordered], dtype=np.int64),
            scheme.tables.ctx,
            np.concatenate([m[1].symbols for m in ordered]),
            with_payload,
            scheme.shift,
            scheme.limit,
            delta,
        )
        return
    for index, row, context in members:
        kernel(
            scores[index : index + 1],
            scheme.t32_signed,
            np.array([context], dtype=np.int64),
            scheme.tables.ctx,
            row.symbols,
            with_payload,
            scheme.shift,
            scheme.limit,
            row.delta32,
        )


def _bias_rows_torch(
    scheme: _Scheme, logits: Any, members: list[tuple[int, _Row, list[int]]]
) -> None:
    """The rows of one key at once with the torch PRF ops (any device)."""
    import torch

    from watermark._private.torch_prf import (
        context_x,
        favoured_left,
        favoured_self,
        slot_index,
    )

    device = logits.device
    tables = scheme.device_tables(device)
    config = scheme.config
    h = config.context_width
    idx = torch.tensor([m[0] for m in members], dtype=torch.int64, device=device)
    ids = torch.tensor([m[2] for m in members], dtype=torch.int64, device=device)
    x = offset = None
    if config.payload is not None:
        symbols = torch.tensor(
            np.concatenate([m[1].symbols for m in members]), dtype=torch.int64, device=device
        )
        x = context_x(ids, tables, h)
        slot = slot_index(x, config.payload.num_slots)
        offset = symbols.gather(1, slot.unsqueeze(1)).squeeze(1) << scheme.shift
    if config.self_seeded:
        mask = favoured_self(ids, tables, h, scheme.threshold, offset, x)
    else:
        mask = favoured_left(ids, tables, h, scheme.threshold, offset, x)
    deltas = torch.tensor([float(m[1].delta32) for m in members], dtype=logits.dtype, device=device)
    sub = logits.index_select(0, idx)
    sub.add_(mask.to(logits.dtype) * deltas.unsqueeze(1))
    logits.index_copy_(0, idx, sub)
