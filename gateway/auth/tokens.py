"""Personal API tokens: `tg_` + 256 random bits, stored only as a sha256 hash."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "tg_"  # noqa: S105 (a prefix, not a secret)
_TOKEN_BYTES = 32
# 43 url-safe base64 characters carry 256 bits; anything far longer is garbage.
MAX_TOKEN_LENGTH = 128


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    # The token has 256 bits of entropy, so a plain hash (no salt, no KDF) is enough and
    # lets us look it up by an indexed column.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 6]


def looks_like_token(token: str) -> bool:
    return (
        token.startswith(TOKEN_PREFIX)
        and len(token) <= MAX_TOKEN_LENGTH
        and all(c.isalnum() or c in "-_" for c in token)
    )
