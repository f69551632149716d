"""Content Credentials without a model: the signing chain's checks, the text wrapper, forged
and replayed manifests, and the soft-binding resolution API's refusals and rate limit."""

from __future__ import annotations

import base64
import datetime as dt
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.config import Settings
from gateway.db.engine import session_scope
from gateway.db.models import ContentCredential
from gateway.db.timeutil import utcnow
from gateway.services.generation import GenerationResult
from gateway.services.provenance import (
    SOFT_BINDING_ALG,
    C2paWrapperInvalid,
    HardBindingMismatch,
    ManifestInvalid,
    ManifestUntrusted,
    ProvenanceService,
    binding_value,
    embed_in_text,
    extract_from_text,
    verify_text_credential,
)
from gateway.services.provenance_certs import (
    ED25519,
    ES256,
    C2paCertificateInvalid,
    ensure_local_ca,
    load_signing_credentials,
)

TEXT = (
    "The gateway logged this call.\nCafe\u0301 \u2014 \u201cquoted\u201d text, kept byte for byte."
)


# ---------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(sign, False, False, False, False, ca, ca, False, False)


def _write_chain(
    directory: Path,
    *,
    not_after: dt.timedelta = dt.timedelta(days=30),
    eku: bool = True,
    leaf_is_ca: bool = False,
    key_ids: bool = False,
) -> tuple[Path, Path, Path]:
    """A root and a signing certificate made by hand, to break one rule at a time."""
    now = utcnow()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("test root"))
        .issuer_name(_name("test root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(False, True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("test signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + not_after)
        .add_extension(x509.BasicConstraints(ca=leaf_is_ca, path_length=None), critical=True)
        .add_extension(_usage(True, leaf_is_ca), critical=True)
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    if key_ids:  # what c2pa-rs needs to sign with it (the refusal tests never get there)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
    leaf = builder.sign(root_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    chain, key_path = directory / "chain.pem", directory / "key.pem"
    root_path = directory / "root.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    root_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return chain, key_path, root_path


def test_local_ca_is_made_once_with_private_key_files(tmp_path: Path) -> None:
    chain, key, root = ensure_local_ca(tmp_path, utcnow())
    for path in tmp_path.iterdir():  # like the gateway's other key files
        assert path.stat().st_mode & 0o777 == 0o600, path
    # root, its key, the signing chain, its key, and the lock replicas take to make them
    assert len(list(tmp_path.iterdir())) == 5
    again = ensure_local_ca(tmp_path, utcnow())
    assert again == (chain, key, root)
    assert load_signing_credentials(*again, now=utcnow()).root_pem == root.read_bytes()


def test_replicas_starting_together_agree_on_one_local_ca(tmp_path: Path) -> None:
    """Regression: replicas sharing the keys volume and starting at once each wrote the same
    temporary file and replaced each other's (FileNotFoundError at start), or could pair one
    replica's signing key with another's certificate."""
    import threading

    start = threading.Barrier(8)
    results: list[tuple[Path, Path, Path]] = []
    errors: list[BaseException] = []

    def replica() -> None:
        start.wait()
        try:
            results.append(ensure_local_ca(tmp_path, utcnow()))
        except BaseException as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    chain, key, root = results[0]
    # The key on disk is the certificate's: signing with them verifies under the root.
    assert load_signing_credentials(chain, key, root, now=utcnow()).root_pem == root.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_local_signing_certificate_is_reissued_before_it_expires(tmp_path: Path) -> None:
    chain, key, root = ensure_local_ca(tmp_path, utcnow())
    first = chain.read_bytes()
    ensure_local_ca(tmp_path, utcnow() + dt.timedelta(days=340))
    assert chain.read_bytes() != first
    later = load_signing_credentials(chain, key, root, now=utcnow() + dt.timedelta(days=340))
    assert later.root_pem == root.read_bytes()


def test_an_expired_signing_certificate_is_refused(tmp_path: Path) -> None:
    paths = _write_chain(tmp_path, not_after=-dt.timedelta(days=1))
    with pytest.raises(C2paCertificateInvalid, match="not valid now"):
        load_signing_credentials(*paths, now=utcnow())


def test_the_gateway_refuses_to_start_signing_with_an_expired_certificate(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    from gateway.app import create_app

    chain, key, root = _write_chain(tmp_path / "c2pa", not_after=-dt.timedelta(days=1))
    expired = settings.model_copy(
        update={"c2pa_cert_chain": chain, "c2pa_private_key": key, "c2pa_trust_anchor": root}
    )
    with pytest.raises(C2paCertificateInvalid):
        create_app(expired, engine=engine)


def test_a_chain_that_does_not_reach_the_root_is_refused(tmp_path: Path) -> None:
    chain, key, _ = _write_chain(tmp_path / "a")
    *_, other_root = _write_chain(tmp_path / "b")
    with pytest.raises(C2paCertificateInvalid, match="does not reach"):
        load_signing_credentials(chain, key, other_root, now=utcnow())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"eku": False}, "lacks a required extension"), ({"leaf_is_ca": True}, "is a CA")],
)
def test_a_signer_a_c2pa_reader_would_refuse_is_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(C2paCertificateInvalid, match=message):
        load_signing_credentials(*_write_chain(tmp_path, **kwargs), now=utcnow())


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    chain, _, root = _write_chain(tmp_path / "a")
    _, other_key, _ = _write_chain(tmp_path / "b")
    with pytest.raises(C2paCertificateInvalid, match="does not match"):
        load_signing_credentials(chain, other_key, root, now=utcnow())


def test_a_signing_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    chain, key, root = _write_chain(tmp_path)
    key.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(C2paCertificateInvalid, match="Ed25519 key or an ECDSA P-256"):
        load_signing_credentials(chain, key, root, now=utcnow())


def test_the_local_ca_signs_with_ed25519_and_replaces_an_older_ecdsa_signer(
    tmp_path: Path,
) -> None:
    """Issue 18 (signing cost): c2pa-rs signs faster with Ed25519; a local signer made before
    (ECDSA P-256) is re-issued once from the same root."""
    chain, key, root = ensure_local_ca(tmp_path, utcnow())
    assert load_signing_credentials(chain, key, root, now=utcnow()).alg == ED25519
    old_chain, old_key, _ = _write_chain(tmp_path / "old")
    chain.write_bytes(old_chain.read_bytes())
    key.write_bytes(old_key.read_bytes())
    ensure_local_ca(tmp_path, utcnow())
    assert load_signing_credentials(chain, key, root, now=utcnow()).alg == ED25519


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_configured_es256_chain_still_signs_credentials_readers_trust(
    tmp_path: Path, engine: Engine
) -> None:
    credentials = load_signing_credentials(*_write_chain(tmp_path, key_ids=True), now=utcnow())
    assert credentials.alg == ES256
    service = ProvenanceService(engine, credentials, "https://gateway.example")
    (credential,) = service._sign_choices(
        call_id="cmpl-es256", log_index=0, model="acme/tiny@1.0.0:open",
        key_id="0123456789abcdef", payloads=[5], texts=[TEXT], release_digest=None,
        logged_at=None,
    )  # fmt: skip
    checked = verify_text_credential(credential.store, TEXT, trust_anchor=credentials.root_pem)
    assert checked.state == "Trusted"


def test_the_chain_settings_go_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(data_dir=tmp_path, c2pa_cert_chain=tmp_path / "chain.pem")


# ---------------------------------------------------------------- signing, verification


@pytest.fixture
def signed(tmp_path: Path, engine: Engine) -> tuple[ProvenanceService, bytes]:
    """A credential for TEXT signed with the local CA (no log entry: no release digest)."""
    settings = Settings(data_dir=tmp_path)
    service = ProvenanceService.for_gateway(settings, engine, tmp_path / "keys", now=utcnow())
    (credential,) = service.issue_for_call(
        call_id="cmpl-test",
        log_index=0,
        model="acme/tiny@1.0.0:open",
        key_id="0123456789abcdef",
        payloads=[77],
        texts=[TEXT],
    )
    return service, credential.store


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_signed_credential_verifies_and_a_replay_onto_other_text_does_not(
    signed: tuple[ProvenanceService, bytes],
) -> None:
    service, store = signed
    checked = verify_text_credential(store, TEXT, trust_anchor=service.root_pem)
    assert checked.state == "Trusted"
    assert checked.assertion("org.tiergate.generation")["call_tag"] == 77
    with pytest.raises(HardBindingMismatch):
        verify_text_credential(store, TEXT + " ", trust_anchor=service.root_pem)
    nfc = unicodedata.normalize("NFC", TEXT)
    with pytest.raises(HardBindingMismatch):  # NFC changes these bytes: bound as sent
        verify_text_credential(store, nfc, trust_anchor=service.root_pem)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "forge",
    [
        lambda s: s[: len(s) // 2],  # truncated
        lambda s: b"garbage" * 20,  # not JUMBF
        lambda s: s[:-40] + bytes(b ^ 0x55 for b in s[-40:]),  # signature bytes flipped
    ],
    ids=["truncated", "garbage", "flipped-signature"],
)
def test_forged_manifests_are_refused(signed: tuple[ProvenanceService, bytes], forge: Any) -> None:
    service, store = signed
    with pytest.raises(ManifestInvalid):
        verify_text_credential(forge(store), TEXT, trust_anchor=service.root_pem)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_credential_from_another_root_is_untrusted(
    signed: tuple[ProvenanceService, bytes], tmp_path: Path
) -> None:
    _, store = signed
    *_, other = ensure_local_ca(tmp_path / "other", utcnow())
    with pytest.raises(ManifestUntrusted):
        verify_text_credential(store, TEXT, trust_anchor=other.read_bytes())


# ---------------------------------------------------------------- the text wrapper


def test_the_wrapper_round_trips_without_touching_the_text() -> None:
    store = bytes(range(256)) * 3
    wrapped = embed_in_text(TEXT, store)
    assert wrapped.startswith(TEXT)  # not NFC-normalized: the hard binding is byte-exact
    assert extract_from_text(wrapped) == (store, TEXT)
    assert extract_from_text(TEXT) == (None, TEXT)


@pytest.mark.parametrize(
    "bad",
    [
        TEXT + "\ufeff" + "\ufe01" * 20,  # selectors that are not a C2PA wrapper header
        TEXT + "\ufeff\ufe00\ufe01",  # too short to be one
        embed_in_text(TEXT, b"x" * 50)[:-10],  # truncated
        embed_in_text(embed_in_text(TEXT, b"a" * 20), b"b" * 20),  # two wrappers
    ],
    ids=["garbage", "short", "truncated", "two"],
)
def test_a_broken_wrapper_is_refused(bad: str) -> None:
    with pytest.raises(C2paWrapperInvalid):
        extract_from_text(bad)


# ---------------------------------------------------------------- the resolution API


def test_supported_algorithms_and_the_published_root(client: Any, tmp_path: Path) -> None:
    algs = client.get("/c2pa/v1/services/supportedAlgorithms")
    assert algs.json() == {"watermarks": [{"alg": SOFT_BINDING_ALG}], "fingerprints": []}
    root = client.get("/.well-known/tiergate/c2pa-root.pem")
    assert root.headers["content-type"] == "application/x-pem-file"
    x509.load_pem_x509_certificate(root.content)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_resolution_refusals_are_typed(client: Any) -> None:
    api = "/c2pa/v1"
    wrong_alg = client.get(f"{api}/matches/byBinding", params={"alg": "x.y.1", "value": "AA=="})
    assert wrong_alg.status_code == 400
    assert wrong_alg.json()["code"] == "soft_binding_alg_unsupported"
    for value in ["not base64!", base64.b64encode(b"short:1").decode(), "A" * 300]:
        bad = client.get(
            f"{api}/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": value}
        )
        assert (bad.status_code, bad.json()["code"]) == (400, "soft_binding_value_invalid")
    none = client.post(
        f"{api}/matches/byBinding",
        json={"alg": SOFT_BINDING_ALG, "value": binding_value("0123456789abcdef", 5)},
    )
    assert none.json() == {"matches": []}
    missing = client.get(f"{api}/manifests/urn:c2pa:00000000-0000-4000-8000-000000000000")
    assert (missing.status_code, missing.json()["code"]) == (404, "c2pa_manifest_not_found")
    as_json = client.post(f"{api}/matches/byContent", json={"text": "hello"})
    assert (as_json.status_code, as_json.json()["code"]) == (415, "unsupported_media_type")
    megabyte = client.post(
        f"{api}/matches/byContent",
        content=b"a" * (1 << 20) + b"b",
        headers={"Content-Type": "text/plain"},
    )
    assert megabyte.status_code == 413
    long_text = client.post(
        f"{api}/matches/byContent",
        content=b"word " * 50_000,
        headers={"Content-Type": "text/plain"},
    )
    assert (long_text.status_code, long_text.json()["code"]) == (413, "resolution_text_too_large")
    garbage = client.post(
        f"{api}/matches/byContent",
        content=("some pasted text" + "\ufeff" + "\ufe01" * 20).encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    assert (garbage.status_code, garbage.json()["code"]) == (422, "c2pa_wrapper_invalid")
    human = client.post(
        f"{api}/matches/byContent",
        content="Minutes of the garden club: attendance was good despite the rain. " * 4,
        headers={"Content-Type": "text/plain"},
    )
    assert human.json() == {"matches": []}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_resolution_api_is_rate_limited_per_address(settings: Settings, engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    limited = settings.model_copy(update={"rate_limit_soft_binding_per_address": 3})
    with TestClient(create_app(limited, engine=engine)) as http:
        codes = [http.get("/c2pa/v1/services/supportedAlgorithms").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = http.get("/c2pa/v1/manifests/urn:c2pa:x")
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1


# ---------------------------------------------------------------- the log transaction


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_credentials_are_kept_only_with_the_callers_transaction(
    tmp_path: Path, engine: Engine
) -> None:
    """Issue 18: the completion endpoints sign inside the call's log transaction, so its
    credentials commit with the entry or not at all (no second commit of their own)."""
    service = ProvenanceService.for_gateway(
        Settings(data_dir=tmp_path), engine, tmp_path / "keys", now=utcnow()
    )
    result = GenerationResult(
        call_id="cmpl-hook",
        created=0,
        model="acme/tiny@1.0.0:open",
        choices=[],
        prompt_tokens=0,
        completion_tokens=0,
        watermark_key_id="0123456789abcdef",
        payloads=[5, 6],
        log_index=3,
        logged_at="2026-12-02T18:00:00.000000Z",
        release_digest="sha256:" + "ab" * 32,
    )
    texts = [TEXT, TEXT + " (second choice)"]
    with Session(engine) as session:
        service.issue_in(session, result, texts)
        session.rollback()
    with Session(engine) as session:
        assert session.exec(select(ContentCredential)).all() == []

    with session_scope(engine) as session:
        issued = service.issue_in(session, result, texts)
    with Session(engine) as session:
        rows = session.exec(select(ContentCredential).order_by(col(ContentCredential.choice_index)))
        kept = [(r.choice_index, r.payload, r.log_index, bytes(r.store)) for r in rows]
    assert kept == [(c.choice_index, p, 3, c.store) for c, p in zip(issued, [5, 6], strict=True)]
    for credential, text, payload in zip(issued, texts, [5, 6], strict=True):
        # Two signatures in a row on this thread: the reused signer signs each correctly.
        checked = verify_text_credential(credential.store, text, trust_anchor=service.root_pem)
        generation = checked.assertion("org.tiergate.generation")
        assert generation["call_tag"] == payload
        assert generation["log_index"] == 3
        assert generation["release_statement_digest"] == result.release_digest
