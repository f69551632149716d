"""Errors of the watermark library.

Exception tree (every class of the part; each line: class, ``code``, meaning)::

    WatermarkError               watermark_error: root; every failure of this part
    +-- WatermarkConfigError     watermark_config_invalid: a parameter or config is invalid
    |   +-- UnsupportedSchemeError  watermark_scheme_unsupported: an unknown scheme version
    +-- WatermarkKeyError        watermark_key_invalid: bad key material, or id mismatch
    +-- VocabMismatchError       watermark_vocab_mismatch: vocab size disagrees with config
    +-- TokenizerMismatchError   watermark_tokenizer_mismatch: tokenizer digest differs
    +-- InvalidTokensError       watermark_invalid_tokens: ids out of range or not integers
    +-- InsufficientTextError    watermark_text_too_short: nothing with a full context
    +-- InvalidLogitsError       watermark_invalid_logits: wrong shape/dtype, non-finite
    +-- PayloadError             watermark_payload_invalid: payload does not fit its bits
    +-- BackendUnavailableError  watermark_backend_unavailable: torch/transformers missing
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "InsufficientTextError",
    "InvalidLogitsError",
    "InvalidTokensError",
    "PayloadError",
    "TokenizerMismatchError",
    "UnsupportedSchemeError",
    "VocabMismatchError",
    "WatermarkConfigError",
    "WatermarkError",
    "WatermarkKeyError",
]


class WatermarkError(Exception):
    """Root of every error raised by :mod:`watermark`."""

    code = "watermark_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WatermarkConfigError(WatermarkError):
    """A watermark parameter, or a serialized :class:`WatermarkConfig`, is invalid."""

    code = "watermark_config_invalid"


class UnsupportedSchemeError(WatermarkConfigError):
    """The config names a scheme version this library does not implement."""

    code = "watermark_scheme_unsupported"


class WatermarkKeyError(WatermarkError):
    """Key material is malformed, or its key id does not match the config."""

    code = "watermark_key_invalid"


class VocabMismatchError(WatermarkError):
    """Logits, token ids or a tokenizer disagree with the vocabulary size in the config."""

    code = "watermark_vocab_mismatch"


class TokenizerMismatchError(WatermarkError):
    """The tokenizer's digest differs from the digest recorded in the config."""

    code = "watermark_tokenizer_mismatch"


class InvalidTokensError(WatermarkError):
    """Token ids are negative, not integers, or not below the vocabulary size."""

    code = "watermark_invalid_tokens"


class InsufficientTextError(WatermarkError):
    """The input is empty, or too short for any token to have a full context."""

    code = "watermark_text_too_short"


class InvalidLogitsError(WatermarkError):
    """Logits have the wrong shape or dtype, or are non-finite where that was checked."""

    code = "watermark_invalid_logits"


class PayloadError(WatermarkError):
    """A payload is negative or does not fit the configured number of bits."""

    code = "watermark_payload_invalid"


class BackendUnavailableError(WatermarkError):
    """The operation needs torch or transformers, and they cannot be imported."""

    code = "watermark_backend_unavailable"
