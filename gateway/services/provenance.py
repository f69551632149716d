"""C2PA Content Credentials for generated text: sign one manifest per choice, keep it, find it.

Each choice gets a C2PA manifest store signed by the gateway (c2pa-python, i.e. c2pa-rs):
a ``c2pa.created`` action (digital source type ``trainedAlgorithmicMedia``, the model as the
software agent), a ``c2pa.hash.data`` hard binding over the returned text's UTF-8 bytes, a
``c2pa.soft-binding`` assertion naming the watermark scheme and the call tag, and an
``org.tiergate.generation`` assertion with the model, its release-statement digest, the call,
its log index and where its receipt is. The store is a sidecar (``application/c2pa``):
returned in the response, kept in ``content_credentials`` (the gateway does not keep the text,
and a signature cannot be re-made to the same bytes), and found again by the soft-binding
resolution API (:mod:`gateway.services.soft_binding`). Embedding it in the text with the C2PA
variation-selector wrapper happens only when the caller asks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import c2pa
import c2pa_text
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway import __version__
from gateway.config import Settings
from gateway.db.engine import session_scope
from gateway.db.models import ContentCredential, LogEntry
from gateway.db.timeutil import utcnow
from gateway.errors import GatewayError
from gateway.services.generation import GenerationResult, LogHook
from gateway.services.provenance_certs import (
    SigningCredentials,
    ensure_local_ca,
    load_signing_credentials,
)
from gateway.services.provenance_store import (
    ContentCredentialNotFound,
    CredentialView,
    credential_for_choice,
    credentials_with_binding,
    describe_for_choice,
    find_credential,
)
from gateway.services.provenance_verify import (
    GENERATION_ASSERTION,
    C2paWrapperInvalid,
    HardBindingMismatch,
    ManifestInvalid,
    ManifestUntrusted,
    VerifiedCredential,
    extract_from_text,
    verify_credential,
    verify_text_credential,
)

__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "MANIFEST_FORMAT",
    "SOFT_BINDING_ALG",
    "C2paWrapperInvalid",
    "ChoiceCredential",
    "ContentCredentialNotFound",
    "CredentialView",
    "CredentialSigningFailed",
    "HardBindingMismatch",
    "ManifestInvalid",
    "ManifestUntrusted",
    "ProvenanceService",
    "VerifiedCredential",
    "binding_value",
    "credential_for_choice",
    "credentials_with_binding",
    "embed_in_text",
    "describe_for_choice",
    "extract_from_text",
    "find_credential",
    "verify_credential",
    "verify_text_credential",
]

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MANIFEST_FORMAT = "application/c2pa"
# The soft binding: tiergate's in-token watermark; its value names the watermark key and the
# call tag (payload) the text carries, "<key id>:<payload>" in UTF-8, base64 in the assertion.
SOFT_BINDING_ALG = "org.tiergate.token-watermark.1"
_MANIFEST_NS = "tiergate-content-credential"


class CredentialSigningFailed(GatewayError):
    """c2pa-rs refused to sign a manifest the gateway built (a bug, or a broken chain)."""

    code = "c2pa_signing_failed"
    title = "Content Credential signing failed"


def binding_value(key_id: str, payload: int) -> str:
    """The soft-binding value (base64) of a call tag under a watermark key."""
    return base64.b64encode(f"{key_id}:{payload}".encode()).decode("ascii")


def manifest_id_for(call_id: str, choice_index: int) -> str:
    """Deterministic per choice, so a retried store is the same row, never a second one.

    c2pa-rs accepts only version-4 UUIDs in a manifest label: the hash of the choice is
    shaped as one (uuid5 is refused as "invalid Claim GUID")."""
    seed = hashlib.sha256(f"{_MANIFEST_NS}/{call_id}/{choice_index}".encode()).digest()
    return f"urn:c2pa:{uuid.UUID(bytes=seed[:16], version=4)}"


@dataclass(frozen=True)
class ChoiceCredential:
    """The Content Credential of one choice, as returned with the completion."""

    manifest_id: str
    choice_index: int
    store: bytes  # the signed C2PA manifest store (JUMBF), application/c2pa
    text_sha256: str
    binding_value: str

    def to_response(self, base_url: str) -> dict[str, Any]:
        return {
            "manifest_id": self.manifest_id,
            "choice_index": self.choice_index,
            "format": MANIFEST_FORMAT,
            "manifest": base64.b64encode(self.store).decode("ascii"),
            "text_sha256": self.text_sha256,
            "soft_binding": {"alg": SOFT_BINDING_ALG, "value": self.binding_value},
            "manifest_url": f"{base_url}/c2pa/v1/manifests/{self.manifest_id}",
        }


class ProvenanceService:
    """Signs Content Credentials with the gateway's C2PA certificate chain."""

    def __init__(self, engine: Engine, credentials: SigningCredentials, base_url: str) -> None:
        self.engine = engine
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        alg = getattr(c2pa.C2paSigningAlg, credentials.alg.upper())
        self._signer_info = c2pa.C2paSignerInfo(
            alg, credentials.chain_pem, credentials.key_pem, None
        )
        # A c2pa Signer (parsed chain and key) and Context are reusable across signatures;
        # one pair per thread, so concurrent signing never waits on another thread's native
        # call. Building the signer per signature cost ~0.2 ms of ~1 ms (issue 18 profile).
        self._local = threading.local()

    def _signing(self) -> tuple[c2pa.Context, c2pa.Signer]:
        made: tuple[c2pa.Context, c2pa.Signer] | None = getattr(self._local, "signing", None)
        if made is None:
            settings = c2pa.Settings()
            # c2pa-rs re-reads and validates every store it has just signed (about half the
            # cost of a signature). The gateway signs only manifests it built, with a chain
            # checked at start-up (provenance_certs); the tests verify what it signs.
            settings.update({"verify": {"verify_after_sign": False}})
            made = (c2pa.Context(settings=settings), c2pa.Signer.from_info(self._signer_info))
            self._local.signing = made
        return made

    @classmethod
    def for_gateway(
        cls, settings: Settings, engine: Engine, keys_dir: Path, *, now: datetime
    ) -> ProvenanceService:
        """The configured chain, or the local CA (made on first start); checked either way."""
        if settings.c2pa_cert_chain is not None:
            assert settings.c2pa_private_key is not None
            assert settings.c2pa_trust_anchor is not None
            chain, key, root = (
                settings.c2pa_cert_chain,
                settings.c2pa_private_key,
                settings.c2pa_trust_anchor,
            )
        else:
            chain, key, root = ensure_local_ca(keys_dir, now)
        credentials = load_signing_credentials(chain, key, root, now=now)
        return cls(engine, credentials, settings.base_url)

    @property
    def root_pem(self) -> bytes:
        return self.credentials.root_pem

    def _manifest(
        self,
        *,
        manifest_id: str,
        call_id: str,
        choice_index: int,
        log_index: int,
        model: str,
        release_digest: str | None,
        key_id: str,
        payload: int,
        text_sha256: str,
        logged_at: str | None,
    ) -> dict[str, Any]:
        repo, _, rest = model.partition("@")
        return {
            "label": manifest_id,
            "claim_generator_info": [{"name": "tiergate", "version": __version__}],
            "title": f"{call_id} choice {choice_index}",
            "format": "text/plain",
            "assertions": [
                {
                    "label": "c2pa.actions.v2",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": DIGITAL_SOURCE_TYPE,
                                "softwareAgent": {"name": repo, "version": rest},
                                "when": logged_at,
                            }
                        ]
                    },
                },
                {
                    "label": "c2pa.soft-binding",
                    "data": {
                        "alg": SOFT_BINDING_ALG,
                        "blocks": [{"scope": {}, "value": binding_value(key_id, payload)}],
                    },
                },
                {
                    "label": GENERATION_ASSERTION,
                    "data": {
                        "model": model,
                        "release_statement_digest": release_digest,
                        "call_id": call_id,
                        "choice_index": choice_index,
                        "log_index": log_index,
                        "receipt_url": f"{self.base_url}/log/receipt/{log_index}",
                        "checkpoint_url": f"{self.base_url}/log/checkpoint",
                        "watermark_key_id": key_id,
                        "call_tag": payload,
                        "text_sha256": text_sha256,
                    },
                },
            ],
        }

    def sign_text(self, manifest: dict[str, Any], text: str) -> bytes:
        """Sign ``manifest`` with a hard binding over ``text`` (UTF-8); the store's bytes."""
        return self.sign_bytes(manifest, text.encode("utf-8"), "text/plain")

    def sign_bytes(self, manifest: dict[str, Any], asset: bytes, media_type: str) -> bytes:
        """Sign ``manifest`` as a sidecar whose ``c2pa.hash.data`` covers ``asset``."""
        # Drop None values (a missing log time): c2pa-rs refuses nulls where a string goes.
        for assertion in manifest["assertions"]:
            if assertion["label"] == "c2pa.actions.v2":
                for action in assertion["data"]["actions"]:
                    for field in [k for k, v in action.items() if v is None]:
                        del action[field]
        context, signer = self._signing()
        builder = c2pa.Builder(manifest, context=context)
        builder.set_no_embed()
        try:
            store: bytes = builder.sign(signer, media_type, io.BytesIO(asset), io.BytesIO())
        except c2pa.C2paError as exc:
            self._local.signing = None  # never reuse a signer c2pa-rs failed with
            raise CredentialSigningFailed(f"signing a Content Credential failed: {exc}") from exc
        finally:
            builder.close()
        return store

    def log_hook(self, texts_of: Callable[[GenerationResult], list[str]]) -> LogHook:
        """A :data:`~gateway.services.generation.LogHook` that signs each choice's credential
        over ``texts_of(result)`` (the texts as returned, by choice index) and stores them in
        the call's log transaction: one commit for the entry and its credentials."""

        def hook(session: Session, result: GenerationResult) -> list[ChoiceCredential]:
            return self.issue_in(session, result, texts_of(result))

        return hook

    def issue_in(
        self, session: Session, result: GenerationResult, texts: list[str]
    ) -> list[ChoiceCredential]:
        """Sign and stage one credential per choice in ``session`` (the log transaction of
        ``result``'s call: its log index, time and release digest are known there)."""
        assert result.log_index is not None
        out = self._sign_choices(
            call_id=result.call_id,
            log_index=result.log_index,
            model=result.model,
            key_id=result.watermark_key_id,
            payloads=result.payloads,
            texts=texts,
            release_digest=result.release_digest,
            logged_at=result.logged_at,
        )
        # Core insert, no ORM merge: the manifest ids are new (the call id is fresh) and
        # unique, so a rerun of the same call cannot get here (its log append would fail).
        session.execute(
            _INSERT_CREDENTIALS,
            _credential_rows(
                out, result.call_id, result.watermark_key_id, result.payloads, result.log_index
            ),
        )
        return out

    def _sign_choices(
        self,
        *,
        call_id: str,
        log_index: int,
        model: str,
        key_id: str,
        payloads: list[int],
        texts: list[str],
        release_digest: str | None,
        logged_at: str | None,
    ) -> list[ChoiceCredential]:
        out = []
        for index, (text, payload) in enumerate(zip(texts, payloads, strict=True)):
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            manifest_id = manifest_id_for(call_id, index)
            manifest = self._manifest(
                manifest_id=manifest_id,
                call_id=call_id,
                choice_index=index,
                log_index=log_index,
                model=model,
                release_digest=release_digest,
                key_id=key_id,
                payload=payload,
                text_sha256=digest,
                logged_at=logged_at,
            )
            store = self.sign_text(manifest, text)
            out.append(
                ChoiceCredential(manifest_id, index, store, digest, binding_value(key_id, payload))
            )
        return out

    def issue_for_call(
        self,
        *,
        call_id: str,
        log_index: int,
        model: str,
        key_id: str,
        payloads: list[int],
        texts: list[str],
    ) -> list[ChoiceCredential]:
        """Sign and keep one credential per choice of an already logged call (``texts`` as
        returned, by choice index), in transactions of its own: the entry is read back first.

        The completion endpoints use :meth:`log_hook` instead (no extra commit). Blocking
        (signing and two transactions): call it from a worker thread.
        """
        with session_scope(self.engine) as session:
            entry = session.get(LogEntry, log_index)
            logged = json.loads(entry.entry) if entry is not None else {}
        out = self._sign_choices(
            call_id=call_id,
            log_index=log_index,
            model=model,
            key_id=key_id,
            payloads=payloads,
            texts=texts,
            release_digest=logged.get("fields", {}).get("model", {}).get("release_digest"),
            logged_at=logged.get("time"),
        )
        with session_scope(self.engine) as session:
            for credential, payload in zip(out, payloads, strict=True):
                session.merge(
                    ContentCredential(
                        manifest_id=credential.manifest_id,
                        call_id=call_id,
                        choice_index=credential.choice_index,
                        key_id=key_id,
                        payload=payload,
                        log_index=log_index,
                        text_sha256=credential.text_sha256,
                        store=credential.store,
                    )
                )
        return out


_INSERT_CREDENTIALS = insert(ContentCredential.__table__)  # type: ignore[attr-defined]


def _credential_rows(
    credentials: list[ChoiceCredential],
    call_id: str,
    key_id: str,
    payloads: list[int],
    log_index: int,
) -> list[dict[str, Any]]:
    created = utcnow()
    return [
        {
            "manifest_id": c.manifest_id,
            "call_id": call_id,
            "choice_index": c.choice_index,
            "key_id": key_id,
            "payload": payload,
            "log_index": log_index,
            "text_sha256": c.text_sha256,
            "store": c.store,
            "created_at": created,
        }
        for c, payload in zip(credentials, payloads, strict=True)
    ]


# ---------------------------------------------------------------- the text wrapper (A.8)


def embed_in_text(text: str, store: bytes) -> str:
    """``text`` with the C2PA text wrapper appended (C2PA 2.x, unstructured text).

    c2pa-text's ``embed_manifest`` would NFC-normalize the text first; ours is bound byte
    for byte, so only its wire encoding (``encode_wrapper``) is used.
    """
    wrapper: str = c2pa_text.encode_wrapper(store)
    return text + wrapper
