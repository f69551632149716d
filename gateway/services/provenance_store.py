"""Kept Content Credentials: found by manifest id, by soft binding or by choice, and the
detector page's view of one (signing and storing them is :mod:`gateway.services.provenance`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session, select

from gateway.db.models import ContentCredential
from gateway.errors import NotFound
from gateway.services.provenance_verify import (
    GENERATION_ASSERTION,
    CredentialClaims,
    extract_from_text,
    read_manifest,
    verify_text_credential,
)

if TYPE_CHECKING:
    from gateway.services.provenance import ProvenanceService

__all__ = [
    "ContentCredentialNotFound",
    "CredentialView",
    "credential_for_choice",
    "credentials_with_binding",
    "describe_for_choice",
    "find_credential",
]


class ContentCredentialNotFound(NotFound):
    code = "c2pa_manifest_not_found"
    title = "No such Content Credential"


def find_credential(session: Session, manifest_id: str) -> ContentCredential:
    row = session.get(ContentCredential, manifest_id[:64])
    if row is None:
        raise ContentCredentialNotFound(f"no Content Credential {manifest_id[:80]!r}")
    return row


def credentials_with_binding(
    session: Session, key_id: str, payload: int, *, limit: int
) -> list[ContentCredential]:
    query = (
        select(ContentCredential)
        .where(ContentCredential.key_id == key_id, ContentCredential.payload == payload)
        .order_by(ContentCredential.log_index.desc())  # type: ignore[attr-defined]
        .limit(limit)
    )
    return list(session.exec(query))


def credential_for_choice(
    session: Session, call_id: str, choice_index: int
) -> ContentCredential | None:
    query = select(ContentCredential).where(
        ContentCredential.call_id == call_id, ContentCredential.choice_index == choice_index
    )
    return session.exec(query).first()


@dataclass(frozen=True)
class CredentialView(CredentialClaims):
    """A recovered Content Credential as the detector page shows it.

    ``text_matches``: the pasted text (wrapper removed) is byte for byte the signed text, and
    the gateway verified the store against it and its own root (hard binding, signature,
    chain). False: the text differs (edited, or changed by pasting), so only the watermark
    links it to this credential; the signed claims are shown as read from the store."""

    text_sha256: str
    text_matches: bool
    manifest_url: str


def describe_for_choice(
    session: Session, service: ProvenanceService, call_id: str, choice_index: int, text: str
) -> CredentialView | None:
    """The Content Credential of an attributed choice, or None (a call made before them)."""
    row = credential_for_choice(session, call_id, choice_index)
    if row is None:
        return None
    _, clean = extract_from_text(text)
    store = bytes(row.store)
    matches = hashlib.sha256(clean.encode("utf-8")).hexdigest() == row.text_sha256
    read = (
        verify_text_credential(store, clean, trust_anchor=service.root_pem)
        if matches
        else read_manifest(store)
    )
    generation = read.assertion(GENERATION_ASSERTION)
    created = None
    for item in read.manifest.get("assertions", []):
        if item.get("label") == "c2pa.actions.v2":
            created = next(
                (a.get("when") for a in item["data"].get("actions", []) if a.get("when")), None
            )
    return CredentialView(
        manifest_id=row.manifest_id,
        signer=read.signer,
        model=str(generation.get("model")),
        release_statement_digest=generation.get("release_statement_digest"),
        call_id=row.call_id,
        choice_index=row.choice_index,
        log_index=row.log_index,
        created=created,
        text_sha256=row.text_sha256,
        text_matches=matches,
        manifest_url=f"/c2pa/v1/manifests/{row.manifest_id}",
    )
