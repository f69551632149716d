"""Password hashing for web sign-in: scrypt (memory-hard) with a per-user salt.

The stored string records its own parameters (``scrypt$n=..,r=..,p=..$salt$hash``), so the
cost can be raised later without breaking existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from gateway.errors import ValidationFailed

SCHEME = "scrypt"
# 2**14 * 8 * 128 bytes = 16 MiB per hash: memory-hard yet fast enough for a sign-in.
DEFAULT_N = 1 << 14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
# Bounds on parameters read back from storage, so a corrupted row cannot ask for gigabytes.
_MAX_N = 1 << 20
_MAX_RP = 32


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int = DEFAULT_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def encode(self) -> str:
        return f"n={self.n},r={self.r},p={self.p}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * params.n * params.r,
        dklen=KEY_BYTES,
    )


def check_password_quality(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(f"a password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters long")


def hash_password(password: str, params: ScryptParams | None = None) -> str:
    check_password_quality(password)
    params = params or ScryptParams()
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}${params.encode()}${_b64(salt)}${_b64(_derive(password, salt, params))}"


def _parse(stored: str) -> tuple[ScryptParams, bytes, bytes] | None:
    try:
        scheme, encoded, salt_text, key_text = stored.split("$")
        values = dict(part.split("=", 1) for part in encoded.split(","))
        params = ScryptParams(n=int(values["n"]), r=int(values["r"]), p=int(values["p"]))
        salt, key = _unb64(salt_text), _unb64(key_text)
    except (ValueError, KeyError):
        return None
    valid = (
        scheme == SCHEME
        and 2 <= params.n <= _MAX_N
        and params.n & (params.n - 1) == 0
        and 1 <= params.r <= _MAX_RP
        and 1 <= params.p <= _MAX_RP
        and len(key) == KEY_BYTES
    )
    return (params, salt, key) if valid else None


# Verified against when the user does not exist, so timing does not reveal which names exist.
_DUMMY = hash_password("not-a-real-password")


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a missing or malformed hash costs the same and says no."""
    if len(password) > MAX_PASSWORD:
        return False
    parsed = _parse(stored) if stored else None
    if parsed is None:
        dummy = _parse(_DUMMY)
        assert dummy is not None
        _derive(password, dummy[1], dummy[0])
        return False
    params, salt, key = parsed
    return hmac.compare_digest(_derive(password, salt, params), key)
