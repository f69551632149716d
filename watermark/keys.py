"""Watermark key material: the secret, its public key id, and key files."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from watermark.errors import WatermarkKeyError
from watermark.prf import key_word

__all__ = ["MIN_KEY_BYTES", "WatermarkKey", "compute_key_id", "find_key", "load_key_file"]

MIN_KEY_BYTES = 16
_MAX_KEY_BYTES = 1024
_MAX_KEY_FILE_BYTES = 4096


def compute_key_id(secret: bytes) -> str:
    """Public id of a key: the first 8 bytes of sha256(secret), hex."""
    return hashlib.sha256(secret).digest()[:8].hex()


class WatermarkKey:
    """A secret watermark key. Its repr shows only the key id; equality is constant time."""

    __slots__ = ("_key64", "_secret", "key_id")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes):
            raise WatermarkKeyError("watermark key material must be bytes")
        if not MIN_KEY_BYTES <= len(secret) <= _MAX_KEY_BYTES:
            raise WatermarkKeyError(
                f"watermark key must be {MIN_KEY_BYTES}..{_MAX_KEY_BYTES} bytes, got {len(secret)}"
            )
        self._secret = secret
        self._key64 = key_word(secret)
        self.key_id = compute_key_id(secret)

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> WatermarkKey:
        """A fresh 32-byte key; pass ``random_bytes`` to make it deterministic in tests."""
        return cls(random_bytes(32))

    @classmethod
    def from_hex(cls, text: str) -> WatermarkKey:
        """Parse a key written as hex (whitespace around it is ignored)."""
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            raise WatermarkKeyError("watermark key is not valid hex") from None
        return cls(secret)

    def to_hex(self) -> str:
        """The secret as hex, for writing a key file. Never log this."""
        return self._secret.hex()

    @property
    def key64(self) -> int:
        """The 64-bit PRF key derived from the secret."""
        return self._key64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WatermarkKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"WatermarkKey(key_id={self.key_id!r})"


def find_key(keys: Iterable[WatermarkKey], key_id: str) -> WatermarkKey:
    """The key with ``key_id`` among ``keys`` (rotation: old keys stay to detect old text)."""
    for key in keys:
        if hmac.compare_digest(key.key_id, key_id):
            return key
    raise WatermarkKeyError(f"no watermark key with id {key_id!r}")


def load_key_file(path: str | Path) -> WatermarkKey:
    """Read a key file holding the secret as hex."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise WatermarkKeyError(f"cannot read key file {file}: {exc.strerror}") from None
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise WatermarkKeyError(f"key file {file} is larger than {_MAX_KEY_FILE_BYTES} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise WatermarkKeyError(f"key file {file} is not ASCII hex") from None
    return WatermarkKey.from_hex(text)
