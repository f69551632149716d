from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from licensing.errors import (
    KeyEncryptedError,
    KeyExistsError,
    KeyFormatError,
    KeyMaterialError,
    LicensingError,
    UnsupportedKeyError,
)
from licensing.keys import (
    KEY_TYPES,
    KeyType,
    PrivateKey,
    PublicKey,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_sign_verify_and_pem_round_trip(key_type: KeyType, tmp_path: Path) -> None:
    key = PrivateKey.generate(key_type)
    assert key.key_type == key_type
    signature = key.sign(b"message")
    assert key.public_key.verify(signature, b"message")
    assert not key.public_key.verify(signature, b"messagE")
    assert not key.public_key.verify(b"", b"message")
    assert not key.public_key.verify(b"\x30\x02\x01", b"message")

    save_private_key(key, tmp_path / "k.pem")
    save_public_key(key.public_key, tmp_path / "k.pub.pem")
    loaded = load_private_key(tmp_path / "k.pem")
    assert loaded.public_key == key.public_key
    assert load_public_key(tmp_path / "k.pub.pem") == key.public_key
    assert loaded.public_key.verify(loaded.sign(b"x"), b"x")


def test_key_id_is_sha256_of_spki_der() -> None:
    key = PrivateKey.generate()
    der = key.public_key.cryptography_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.key_id == hashlib.sha256(der).hexdigest()
    # Stable across PEM round trips.
    assert PublicKey.from_pem(key.public_key.to_pem()).key_id == key.key_id


def test_ecdsa_signatures_are_der() -> None:
    key = PrivateKey.generate("ecdsa-p256")
    assert key.sign(b"x")[0] == 0x30  # DER SEQUENCE


def test_repr_hides_private_material() -> None:
    key = PrivateKey.generate()
    assert "BEGIN" not in repr(key)
    assert "_crypto" not in repr(key)


def test_private_key_file_is_0600_and_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    first = PrivateKey.generate()
    save_private_key(first, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(KeyExistsError):
        save_private_key(PrivateKey.generate(), path)
    assert load_private_key(path).key_id == first.key_id
    second = PrivateKey.generate()
    os.chmod(path, 0o644)
    save_private_key(second, path, overwrite=True)
    assert load_private_key(path).key_id == second.key_id
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"\x00" * 20000,
    ],
)
def test_garbage_is_key_format_error(data: bytes) -> None:
    with pytest.raises(KeyFormatError):
        PrivateKey.from_pem(data)
    with pytest.raises(KeyFormatError):
        PublicKey.from_pem(data)


def test_encrypted_key_is_rejected() -> None:
    crypto = ec.generate_private_key(ec.SECP256R1())
    pem = crypto.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(KeyEncryptedError):
        PrivateKey.from_pem(pem)


def test_rsa_and_other_curves_are_unsupported() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for crypto in (rsa_key, p384):
        private_pem = crypto.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = crypto.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(UnsupportedKeyError):
            PrivateKey.from_pem(private_pem)
        with pytest.raises(UnsupportedKeyError):
            PublicKey.from_pem(public_pem)


def test_errors_share_the_root() -> None:
    assert issubclass(KeyFormatError, KeyMaterialError)
    assert issubclass(KeyMaterialError, LicensingError)
    codes = {KeyFormatError.code, KeyEncryptedError.code, UnsupportedKeyError.code}
    assert len(codes) == 3


def test_unknown_key_type() -> None:
    with pytest.raises(UnsupportedKeyError):
        PrivateKey.generate("rsa")  # type: ignore[arg-type]
