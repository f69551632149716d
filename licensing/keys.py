"""Signing keys: ECDSA P-256 (SHA-256, DER signatures) and Ed25519, with stable key ids.

A key id is the lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER: it depends on
the key alone, not on PEM line wrapping, so every party computes the same id.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from licensing.canonical import sha256_hex
from licensing.errors import (
    KeyEncryptedError,
    KeyExistsError,
    KeyFormatError,
    UnsupportedKeyError,
)

__all__ = [
    "KEY_TYPES",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "load_private_key",
    "load_public_key",
    "save_private_key",
    "save_public_key",
]

KeyType = Literal["ecdsa-p256", "ed25519"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)

# PEM keys are a few hundred bytes; anything far larger is not a key and is not worth parsing.
_MAX_PEM_BYTES = 16 * 1024

_CryptoPublic = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_CryptoPrivate = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class PublicKey:
    """A public verification key. Equal keys have equal ``spki_der`` (and ``key_id``)."""

    key_type: KeyType
    spki_der: bytes = field(repr=False)
    _crypto: _CryptoPublic = field(repr=False, compare=False)

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        """Parse a ``PUBLIC KEY`` PEM (SubjectPublicKeyInfo). Raises a :class:`KeyMaterialError`."""
        _check_pem(data, "public")
        try:
            loaded = serialization.load_pem_public_key(data)
        except UnsupportedAlgorithm as exc:
            raise UnsupportedKeyError("unsupported public key algorithm") from exc
        except (ValueError, TypeError) as exc:
            raise KeyFormatError("not a readable PEM public key") from exc
        return cls.from_cryptography(loaded)

    @classmethod
    def from_cryptography(cls, key: object) -> PublicKey:
        """Wrap a ``cryptography`` public key; only P-256 and Ed25519 are accepted."""
        key_type = _public_key_type(key)
        assert isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey))
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key_type=key_type, spki_der=der, _crypto=key)

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the SubjectPublicKeyInfo DER."""
        return sha256_hex(self.spki_der)

    @property
    def cryptography_key(self) -> _CryptoPublic:
        """The underlying ``cryptography`` key, for interoperating with other libraries."""
        return self._crypto

    def to_pem(self) -> bytes:
        """``PUBLIC KEY`` PEM (SubjectPublicKeyInfo)."""
        return self._crypto.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is valid over ``data``; any malformed input is simply False."""
        if not isinstance(signature, bytes) or not isinstance(data, bytes):
            return False
        try:
            if isinstance(self._crypto, ec.EllipticCurvePublicKey):
                self._crypto.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                self._crypto.verify(signature, data)
        except (InvalidSignature, ValueError, TypeError, OverflowError):
            # cryptography reports malformed DER as InvalidSignature today; the other types
            # guard against that changing, so that verification can only ever fail closed.
            return False
        return True


@dataclass(frozen=True, eq=False)
class PrivateKey:
    """A private signing key. Its ``repr`` never shows key material."""

    key_type: KeyType
    public_key: PublicKey
    _crypto: _CryptoPrivate = field(repr=False)

    @classmethod
    def generate(cls, key_type: KeyType = "ecdsa-p256") -> PrivateKey:
        """A fresh key from the operating system's CSPRNG."""
        crypto: _CryptoPrivate
        if key_type == "ecdsa-p256":
            crypto = ec.generate_private_key(ec.SECP256R1())
        elif key_type == "ed25519":
            crypto = ed25519.Ed25519PrivateKey.generate()
        else:
            raise UnsupportedKeyError(f"unknown key type {key_type!r}; use one of {KEY_TYPES}")
        return cls._wrap(crypto)

    @classmethod
    def from_pem(cls, data: bytes) -> PrivateKey:
        """Parse an unencrypted PKCS#8 or SEC1 PEM private key."""
        _check_pem(data, "private")
        # PKCS#8 "BEGIN ENCRYPTED PRIVATE KEY" or legacy OpenSSL "Proc-Type: 4,ENCRYPTED".
        if b"-----BEGIN ENCRYPTED" in data or b"Proc-Type: 4,ENCRYPTED" in data:
            raise KeyEncryptedError("the private key is encrypted; tiergate needs it unencrypted")
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except TypeError as exc:
            # cryptography raises TypeError when a password would be needed.
            raise KeyEncryptedError("the private key is encrypted") from exc
        except UnsupportedAlgorithm as exc:
            raise UnsupportedKeyError("unsupported private key algorithm") from exc
        except ValueError as exc:
            raise KeyFormatError("not a readable PEM private key") from exc
        if not isinstance(loaded, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
            raise UnsupportedKeyError(
                f"{type(loaded).__name__} keys are not supported; use ECDSA P-256 or Ed25519"
            )
        return cls._wrap(loaded)

    @classmethod
    def _wrap(cls, crypto: _CryptoPrivate) -> PrivateKey:
        public = PublicKey.from_cryptography(crypto.public_key())
        return cls(key_type=public.key_type, public_key=public, _crypto=crypto)

    @property
    def key_id(self) -> str:
        """The key id of the public half."""
        return self.public_key.key_id

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM. Store it only with :func:`save_private_key` (mode 0600)."""
        return self._crypto.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        """A signature over ``data``: DER ECDSA-SHA256 for P-256, 64 raw bytes for Ed25519."""
        if isinstance(self._crypto, ec.EllipticCurvePrivateKey):
            return self._crypto.sign(data, ec.ECDSA(hashes.SHA256()))
        return self._crypto.sign(data)


def _public_key_type(key: object) -> KeyType:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        raise UnsupportedKeyError(f"curve {key.curve.name} is not supported; use P-256")
    raise UnsupportedKeyError(
        f"{type(key).__name__} keys are not supported; use ECDSA P-256 or Ed25519"
    )


def _check_pem(data: object, kind: str) -> None:
    if not isinstance(data, bytes):
        raise KeyFormatError(f"a PEM {kind} key must be bytes")
    if len(data) > _MAX_PEM_BYTES:
        raise KeyFormatError(f"a PEM {kind} key is not {len(data)} bytes long")
    if b"-----BEGIN " not in data:
        raise KeyFormatError(f"not a PEM {kind} key (no BEGIN line)")


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read a PEM private key file."""
    return PrivateKey.from_pem(_read_small(Path(path)))


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Read a PEM public key file."""
    return PublicKey.from_pem(_read_small(Path(path)))


def _read_small(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(_MAX_PEM_BYTES + 1)
    if len(data) > _MAX_PEM_BYTES:
        raise KeyFormatError(f"{path} is too large to be a PEM key")
    return data


def save_private_key(
    key: PrivateKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write ``key`` as PEM with mode 0600. Refuses to replace a file unless ``overwrite``."""
    return _write_file(Path(path), key.to_pem(), mode=0o600, overwrite=overwrite)


def save_public_key(
    key: PublicKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write ``key`` as PEM with mode 0644. Refuses to replace a file unless ``overwrite``."""
    return _write_file(Path(path), key.to_pem(), mode=0o644, overwrite=overwrite)


def _write_file(path: Path, data: bytes, *, mode: int, overwrite: bool) -> Path:
    if not overwrite:
        # O_EXCL makes "does it exist?" and "create it" one atomic step, and the mode is set at
        # creation so a private key is never readable by others, not even for an instant.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError as exc:
            raise KeyExistsError(f"{path} exists; pass overwrite (--force) to replace it") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, mode)  # the umask may have narrowed or (for 0644) cut the mode
        return path
    # Replacing: write a private temp file beside the target and rename over it, so a reader
    # never sees a half-written key and the old file's permissions never carry over.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path
