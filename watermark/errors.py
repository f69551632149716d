"""Errors of the watermark library.

Exception tree::

    WatermarkError               root; every failure of this part is one of these
    +-- WatermarkConfigError     a parameter or a serialized config is invalid
    +-- UnsupportedSchemeError   a config names a scheme this library does not implement
    +-- WatermarkKeyError        key material is malformed, or its id does not match the config
    +-- VocabMismatchError       logits, token ids or tokenizer disagree with the config's vocab
    +-- TokenizerMismatchError   the tokenizer's digest differs from the one recorded in the config
    +-- InvalidTokensError       token ids out of range, negative or not integers
    +-- InsufficientTextError    empty input, or no token has a full context to be scored
    +-- InvalidLogitsError       logits of the wrong shape or dtype, or non-finite when checked
    +-- PayloadError             a payload does not fit the configured payload size
    +-- BackendUnavailableError  the operation needs torch or transformers, which are missing
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
