"""The certificate chain that signs Content Credentials: load a configured one, or make a local CA.

C2PA readers (c2pa-rs, which c2pa-python wraps) accept a claim signer only if its certificate
is X.509 v3, not a CA, has the ``digitalSignature`` key usage and an extended key usage they
allow (we use ``id-kp-emailProtection``: c2pa-rs 0.91 refused ``id-kp-documentSigning`` in
our tests), is inside its validity period, and chains to a trust anchor the reader was given.
The checks below refuse, at start-up, a chain a reader would refuse later.

The local CA's signing key is Ed25519 (C2PA's ``Ed25519`` algorithm): c2pa-rs signs with it
about a quarter faster than with ECDSA P-256 (issue 18's signing-cost profile), and every
C2PA reader must accept it. A configured chain may use either; the algorithm follows the key.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from gateway.errors import ConfigurationError

__all__ = [
    "ES256",
    "ED25519",
    "ROOT_FILE",
    "C2paCertificateInvalid",
    "SigningCredentials",
    "ensure_local_ca",
    "load_signing_credentials",
]

# Flat files in the keys dir, next to the gateway's other keys (all mode 0600).
ROOT_FILE = "c2pa-root-ca.pem"
ROOT_KEY_FILE = "c2pa-root-ca-key.pem"
CHAIN_FILE = "c2pa-signer-chain.pem"
KEY_FILE = "c2pa-signer-key.pem"
_LEAF_DAYS = 365
_ROOT_DAYS = 3650
_RENEW_BEFORE = dt.timedelta(days=30)
# C2PA signing algorithms by key type (c2pa.C2paSigningAlg names, lower case).
ES256 = "es256"
ED25519 = "ed25519"
# EKUs c2pa-rs's default trust configuration accepts for a claim signer.
_ALLOWED_EKUS = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ObjectIdentifier("1.3.6.1.4.1.62558.2.1"),  # c2pa-kp-claimSigning
}


class C2paCertificateInvalid(ConfigurationError):
    """The Content Credentials signing chain would be refused by a C2PA reader."""

    code = "c2pa_certificate_invalid"
    title = "Content Credentials certificate refused"


@dataclass(frozen=True)
class SigningCredentials:
    """A checked signing chain: PEM chain (signer first, no root), its key, the trust root."""

    chain_pem: bytes
    key_pem: bytes
    root_pem: bytes
    not_after: dt.datetime
    alg: str = ES256  # ES256 or ED25519, from the key

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks
        return f"SigningCredentials(alg={self.alg}, not_after={self.not_after.isoformat()})"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tiergate"),
        ]
    )


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` with mode 0600 (replacing it atomically; a temporary name of its own, so
    two writers never replace each other's half-written file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp creates it with mode 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold the keys folder's lock: replicas that share it (one volume) and start together
    must agree on one root and one signing key, not each write its own over the other's."""
    fd = os.open(directory / ".local-ca.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _issue_leaf(
    root: x509.Certificate, root_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> tuple[x509.Certificate, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("tiergate gateway Content Credentials signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return cert, key


def ensure_local_ca(keys_dir: Path, now: dt.datetime) -> tuple[Path, Path, Path]:
    """The embedded default: a local root CA and a signing certificate in ``keys_dir``.

    Made on first start, reused after; the signing certificate is re-issued from the root
    when it is within 30 days of expiry. Returns (chain, key, root) paths.
    """
    directory = keys_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _exclusive(directory):
        return _ensure_local_ca(directory, now)


def _ensure_local_ca(directory: Path, now: dt.datetime) -> tuple[Path, Path, Path]:
    root_path, root_key_path = directory / ROOT_FILE, directory / ROOT_KEY_FILE
    chain_path, key_path = directory / CHAIN_FILE, directory / KEY_FILE
    if not root_path.exists() or not root_key_path.exists():
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = (
            x509.CertificateBuilder()
            .subject_name(_name("tiergate local Content Credentials root CA"))
            .issuer_name(_name("tiergate local Content Credentials root CA"))
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(sign=False, ca=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
            )
            .sign(root_key, hashes.SHA256())
        )
        _write_private(root_key_path, _pem_key(root_key))
        _write_private(root_path, root.public_bytes(serialization.Encoding.PEM))
        chain_path.unlink(missing_ok=True)
    root = x509.load_pem_x509_certificate(root_path.read_bytes())
    loaded_root_key = serialization.load_pem_private_key(root_key_path.read_bytes(), None)
    if not isinstance(loaded_root_key, ec.EllipticCurvePrivateKey):
        raise C2paCertificateInvalid(f"{root_key_path} is not an EC key")
    fresh = chain_path.exists() and key_path.exists()
    if fresh:
        leaf = x509.load_pem_x509_certificate(chain_path.read_bytes())
        # Near expiry, or an ECDSA leaf made before signing moved to Ed25519: issue anew
        # (credentials signed before stay valid: same root).
        fresh = leaf.not_valid_after_utc - _RENEW_BEFORE > now and isinstance(
            leaf.public_key(), ed25519.Ed25519PublicKey
        )
    if not fresh:
        leaf, leaf_key = _issue_leaf(root, loaded_root_key, now)
        _write_private(key_path, _pem_key(leaf_key))
        _write_private(chain_path, leaf.public_bytes(serialization.Encoding.PEM))
    return chain_path, key_path, root_path


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise C2paCertificateInvalid(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_signer(leaf: x509.Certificate, now: dt.datetime) -> None:
    if leaf.version != x509.Version.v3:
        raise C2paCertificateInvalid("the signing certificate is not X.509 v3")
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise C2paCertificateInvalid(
            f"the signing certificate is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d}"
            f" to {leaf.not_valid_after_utc:%Y-%m-%d}); the gateway will not sign with it"
        )
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        ekus = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound as exc:
        raise C2paCertificateInvalid(
            f"the signing certificate lacks a required extension ({exc.oid.dotted_string})"
        ) from exc
    if constraints.ca:
        raise C2paCertificateInvalid("the signing certificate is a CA certificate")
    if not usage.digital_signature:
        raise C2paCertificateInvalid("the signing certificate lacks the digitalSignature usage")
    if not ekus & _ALLOWED_EKUS:
        raise C2paCertificateInvalid(
            "the signing certificate has no extended key usage a C2PA reader accepts "
            "(id-kp-emailProtection or c2pa-kp-claimSigning)"
        )
    if leaf.issuer == leaf.subject:
        raise C2paCertificateInvalid("the signing certificate is self-signed")


def load_signing_credentials(
    chain: Path, key: Path, root: Path, *, now: dt.datetime
) -> SigningCredentials:
    """Load and check a signing chain; refuse (typed) what a C2PA reader would refuse."""
    chain_pem, key_pem, root_pem = (
        _read(chain, "certificate chain"),
        _read(key, "private key"),
        _read(root, "trust anchor"),
    )
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
        anchor = x509.load_pem_x509_certificate(root_pem)
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise C2paCertificateInvalid(f"a Content Credentials PEM file is malformed: {exc}") from exc
    leaf = certs[0]
    _check_signer(leaf, now)
    alg = _signing_alg(private)
    if _public_raw(private.public_key()) != _public_raw(leaf.public_key()):
        raise C2paCertificateInvalid("the private key does not match the signing certificate")
    # Walk signer -> intermediates -> the anchor; a root inside the chain is dropped
    # (C2PA readers take the anchor from their trust list, not from the manifest).
    path = [c for c in certs if c != anchor]
    for child, parent in zip(path, [*path[1:], anchor], strict=True):
        if not _issued_by(child, parent):
            raise C2paCertificateInvalid(
                "the certificate chain does not reach the configured trust anchor "
                f"({child.subject.rfc4514_string()} is not issued by "
                f"{parent.subject.rfc4514_string()})"
            )
    for cert in path[1:]:
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise C2paCertificateInvalid(f"{cert.subject.rfc4514_string()} is not valid now")
    return SigningCredentials(
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in path),
        key_pem=key_pem,
        root_pem=anchor.public_bytes(serialization.Encoding.PEM),
        not_after=leaf.not_valid_after_utc,
        alg=alg,
    )


def _signing_alg(private: object) -> str:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return ED25519
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        return ES256
    raise C2paCertificateInvalid(
        "the signing key must be an Ed25519 key or an ECDSA P-256 key (ES256)"
    )


def _public_raw(public: object) -> bytes:
    """The public key's SubjectPublicKeyInfo (DER): equal iff the keys are."""
    if not isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return b""  # a certificate key of another type matches no key we sign with
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
