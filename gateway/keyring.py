"""Gateway secrets and signing keys: generated on first start into the keys dir, reused after.

Files are created with mode 0600 (the directory 0700) and never overwritten, so a restart
on the same data dir keeps every key, and several replicas can share one keys volume.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.errors import ConfigurationError

LOG_KEY_FILE = "log-ed25519.pem"
OAUTH_KEY_FILE = "oauth-es256.pem"
LINK_KEY_FILE = "link-hmac-1.key"
WATERMARK_KEY_FILE = "watermark-master.key"


@dataclass(frozen=True)
class Keyring:
    """Everything secret the gateway holds. Never logged, never sent to a client."""

    directory: Path
    log_signing_key: ed25519.Ed25519PrivateKey
    oauth_signing_key: ec.EllipticCurvePrivateKey
    # Link keys by key id; the newest signs, older ones verify until their links expire.
    link_keys: dict[str, bytes]
    current_link_key_id: str
    watermark_master_key: bytes

    def __repr__(self) -> str:  # keep secrets out of reprs and tracebacks
        return f"Keyring(directory={str(self.directory)!r})"


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600; if another process won the race, keep theirs."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _load_or_create(path: Path, make: bytes) -> bytes:
    if not path.exists():
        _write_new(path, make)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigurationError(
            f"key file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
    return path.read_bytes()


def _pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_writable_dir(path: Path, *, what: str, mode: int = 0o755) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the {what} {path}: {exc.strerror}") from exc
    probe = path / f".write-test-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"the {what} {path} is not writable ({exc.strerror}); "
            "fix its permissions or point TIERGATE_DATA_DIR elsewhere"
        ) from exc


def load_keyring(directory: Path) -> Keyring:
    """Load the gateway's keys from ``directory``, generating any that are missing."""
    ensure_writable_dir(directory, what="keys directory", mode=0o700)
    log_pem = _load_or_create(directory / LOG_KEY_FILE, _pem(ed25519.Ed25519PrivateKey.generate()))
    oauth_pem = _load_or_create(
        directory / OAUTH_KEY_FILE, _pem(ec.generate_private_key(ec.SECP256R1()))
    )
    _load_or_create(directory / LINK_KEY_FILE, secrets.token_bytes(32))
    watermark = _load_or_create(directory / WATERMARK_KEY_FILE, secrets.token_bytes(32))
    try:
        log_key = serialization.load_pem_private_key(log_pem, password=None)
        oauth_key = serialization.load_pem_private_key(oauth_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"a key file in {directory} is corrupt: {exc}") from exc
    if not isinstance(log_key, ed25519.Ed25519PrivateKey):
        raise ConfigurationError(f"{directory / LOG_KEY_FILE} is not an Ed25519 key")
    if not isinstance(oauth_key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{directory / OAUTH_KEY_FILE} is not an EC key")
    link_keys: dict[str, bytes] = {}
    for path in sorted(directory.glob("link-hmac-*.key")):
        key_id = path.stem.removeprefix("link-hmac-")
        data = _load_or_create(path, b"")
        if len(data) < 32:
            raise ConfigurationError(f"link key {path} is shorter than 32 bytes")
        link_keys[key_id] = data
    current = max(link_keys, key=lambda kid: (len(kid), kid))
    return Keyring(
        directory=directory,
        log_signing_key=log_key,
        oauth_signing_key=oauth_key,
        link_keys=link_keys,
        current_link_key_id=current,
        watermark_master_key=watermark,
    )
