"""The frozen record of every parameter detection needs, and the tokenizer digest."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from watermark.errors import UnsupportedSchemeError, VocabMismatchError, WatermarkConfigError
from watermark.keys import WatermarkKey
from watermark.prf import SCHEME

__all__ = [
    "CHECK_BITS",
    "PayloadSettings",
    "WatermarkConfig",
    "tokenizer_digest",
    "tokenizer_vocab_size",
]

CHECK_BITS = {"crc8": 8}
MAX_CONTEXT_WIDTH = 8
MAX_VOCAB_SIZE = (1 << 31) - 1
_MAX_JSON_BYTES = 64 * 1024
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _fail(message: str) -> WatermarkConfigError:
    return WatermarkConfigError(message)


def _int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{name} must be an integer")
    if not low <= value <= high:
        raise _fail(f"{name} must be in {low}..{high}, got {value}")
    return value


@dataclass(frozen=True)
class PayloadSettings:
    """A multi-bit payload: ``payload_bits`` data bits plus a check code, in 2**b colours."""

    payload_bits: int = 20
    check: str = "crc8"
    bits_per_symbol: int = 2

    def __post_init__(self) -> None:
        _int(self.payload_bits, "payload_bits", 1, 32)
        _int(self.bits_per_symbol, "bits_per_symbol", 1, 4)
        if self.check not in CHECK_BITS:
            raise _fail(f"unknown payload check {self.check!r}; known: {sorted(CHECK_BITS)}")

    @property
    def check_bits(self) -> int:
        return CHECK_BITS[self.check]

    @property
    def total_bits(self) -> int:
        return self.payload_bits + self.check_bits

    @property
    def num_colours(self) -> int:
        return 1 << self.bits_per_symbol

    @property
    def num_slots(self) -> int:
        """Number of symbols the coded payload is split into."""
        return -(-self.total_bits // self.bits_per_symbol)


@dataclass(frozen=True)
class WatermarkConfig:
    """Everything needed to apply or detect one watermark, except the secret key itself."""

    key_id: str
    vocab_size: int
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1
    self_seeded: bool = False
    tokenizer_digest: str | None = None
    payload: PayloadSettings | None = None
    scheme: str = SCHEME

    def __post_init__(self) -> None:
        if self.scheme != SCHEME:
            raise UnsupportedSchemeError(f"unsupported watermark scheme {self.scheme!r}")
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise _fail("key_id must be 16 lowercase hex characters")
        _int(self.vocab_size, "vocab_size", 2, MAX_VOCAB_SIZE)
        _int(self.context_width, "context_width", 1, MAX_CONTEXT_WIDTH)
        for name in ("gamma", "delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(f"{name} must be a number")
            object.__setattr__(self, name, float(value))
        if not (math.isfinite(self.gamma) and 0.0 < self.gamma < 1.0):
            raise _fail(f"gamma must be in (0, 1), got {self.gamma}")
        if not (math.isfinite(self.delta) and 0.0 <= self.delta <= 100.0):
            raise _fail(f"delta must be in [0, 100], got {self.delta}")
        if not isinstance(self.self_seeded, bool):
            raise _fail("self_seeded must be a boolean")
        if self.tokenizer_digest is not None and not (
            isinstance(self.tokenizer_digest, str) and _DIGEST.fullmatch(self.tokenizer_digest)
        ):
            raise _fail("tokenizer_digest must be 'sha256:' followed by 64 lowercase hex digits")
        if self.payload is not None:
            if not isinstance(self.payload, PayloadSettings):
                raise _fail("payload must be PayloadSettings")
            # The favoured list of a symbol is one colour, so its share of the vocabulary is fixed.
            if self.gamma != 1.0 / self.payload.num_colours:
                raise _fail(
                    f"with a {self.payload.bits_per_symbol}-bit symbol gamma must be "
                    f"{1.0 / self.payload.num_colours}, got {self.gamma}"
                )

    @classmethod
    def create(
        cls,
        key: WatermarkKey,
        vocab_size: int,
        *,
        tokenizer: Any = None,
        gamma: float | None = None,
        delta: float = 2.0,
        context_width: int = 1,
        self_seeded: bool = False,
        payload: PayloadSettings | None = None,
    ) -> WatermarkConfig:
        """Build a config for ``key``; with a tokenizer its digest is recorded and checked."""
        digest = None
        if tokenizer is not None:
            digest = tokenizer_digest(tokenizer)
            if tokenizer_vocab_size(tokenizer) > vocab_size:
                raise VocabMismatchError(
                    f"tokenizer has ids up to {tokenizer_vocab_size(tokenizer) - 1}, "
                    f"beyond vocab_size {vocab_size}"
                )
        if gamma is None:
            gamma = 1.0 / payload.num_colours if payload is not None else 0.25
        return cls(
            key_id=key.key_id,
            vocab_size=vocab_size,
            gamma=gamma,
            delta=delta,
            context_width=context_width,
            self_seeded=self_seeded,
            tokenizer_digest=digest,
            payload=payload,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the form recorded with each generation."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: object) -> WatermarkConfig:
        if not isinstance(data, dict):
            raise _fail("watermark config must be a JSON object")
        fields = set(cls.__dataclass_fields__)
        unknown = set(data) - fields
        if unknown:
            raise _fail(f"unknown watermark config fields: {sorted(unknown)}")
        missing = {"key_id", "vocab_size", "scheme"} - set(data)
        if missing:
            raise _fail(f"missing watermark config fields: {sorted(missing)}")
        values = dict(data)
        payload = values.get("payload")
        if payload is not None:
            if not isinstance(payload, dict) or set(payload) - set(
                PayloadSettings.__dataclass_fields__
            ):
                raise _fail("payload must be an object with payload_bits, check, bits_per_symbol")
            values["payload"] = PayloadSettings(**payload)
        try:
            return cls(**values)
        except TypeError as exc:
            raise _fail(f"invalid watermark config: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> WatermarkConfig:
        if len(text) > _MAX_JSON_BYTES:
            raise _fail(f"watermark config larger than {_MAX_JSON_BYTES} bytes")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _fail(f"watermark config is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _vocab_of(tokenizer: Any) -> dict[str, int]:
    try:
        vocab = tokenizer.get_vocab()
    except AttributeError:
        raise _fail("tokenizer has no get_vocab()") from None
    if not isinstance(vocab, dict) or not vocab:
        raise _fail("tokenizer vocabulary is empty")
    return vocab


def tokenizer_vocab_size(tokenizer: Any) -> int:
    """One past the largest token id the tokenizer can produce."""
    return max(_vocab_of(tokenizer).values()) + 1


def tokenizer_digest(tokenizer: Any) -> str:
    """``sha256:`` of the canonical vocabulary (JSON list of [id, token] sorted by id)."""
    entries = sorted((int(i), str(t)) for t, i in _vocab_of(tokenizer).items())
    canonical = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
