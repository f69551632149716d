"""The C2PA soft-binding resolution API's use cases: find Content Credentials by watermark.

The shape is C2PA's (``/services/supportedAlgorithms``, ``/matches/byBinding``,
``/matches/byContent``, ``/manifests/{manifestId}``); each match also carries, under
``tiergate``, the call's log index and an inclusion proof against the latest signed
checkpoint, so a reader need not trust this gateway's database to believe the match.
Public, and limited per client address (:func:`ratelimit.soft_binding_limits`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session

from gateway.db.models import ContentCredential
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.services import detection, ratelimit
from gateway.services.provenance import (
    SOFT_BINDING_ALG,
    credential_for_choice,
    credentials_with_binding,
    extract_from_text,
    find_credential,
)

__all__ = [
    "MAX_CONTENT_CHARS",
    "MAX_RESULTS",
    "ResolutionTextTooLarge",
    "SoftBindingAlgUnsupported",
    "SoftBindingValueInvalid",
    "charge",
    "manifest_store",
    "matches_by_binding",
    "matches_by_content",
    "supported_algorithms",
]

log = logging.getLogger("tiergate.soft_binding")
MAX_RESULTS = 16
# Detection reads at most this much text (bounded work per request; 413 beyond).
MAX_CONTENT_CHARS = 200_000
_MAX_VALUE_CHARS = 256


class SoftBindingAlgUnsupported(BadRequest):
    code = "soft_binding_alg_unsupported"
    title = "Soft-binding algorithm not supported"


class SoftBindingValueInvalid(BadRequest):
    code = "soft_binding_value_invalid"
    title = "Soft-binding value invalid"


class ResolutionTextTooLarge(PayloadTooLarge):
    code = "resolution_text_too_large"
    title = "Text too large to resolve"


def charge(
    session: Session, address: str, *, per_address: int, window_seconds: int, now: datetime
) -> None:
    """Count one request of ``address``; 429 past its budget."""
    limits = ratelimit.soft_binding_limits(
        address, per_address=per_address, window_seconds=window_seconds
    )
    ratelimit.hit_in(session, limits, now=now)


def supported_algorithms() -> dict[str, Any]:
    return {"watermarks": [{"alg": SOFT_BINDING_ALG}], "fingerprints": []}


def _check_alg(alg: str | None) -> None:
    if alg is not None and alg != SOFT_BINDING_ALG:
        raise SoftBindingAlgUnsupported(
            f"this service resolves {SOFT_BINDING_ALG} only", extra={"alg": alg[:100]}
        )


def _parse_value(value: str) -> tuple[str, int]:
    if len(value) > _MAX_VALUE_CHARS:
        raise SoftBindingValueInvalid("the soft-binding value is too long")
    try:
        raw = base64.b64decode(value, validate=True).decode("ascii")
        key_id, _, payload = raw.partition(":")
        number = int(payload) if payload.isdigit() and len(payload) <= 19 else -1
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SoftBindingValueInvalid(
            "the soft-binding value is not base64 of 'KEYID:TAG'"
        ) from exc
    if len(key_id) != 16 or any(c not in "0123456789abcdef" for c in key_id) or number < 0:
        raise SoftBindingValueInvalid("the soft-binding value is not base64 of 'KEYID:TAG'")
    return key_id, number


def _proof(session: Session, log_index: int) -> dict[str, Any] | None:
    from gateway.ledger.reads import inclusion

    try:
        found = inclusion(session, log_index, None)
    except Exception:  # not integrated yet, or no checkpoint: the match still stands
        log.info("no inclusion proof yet for log index %d", log_index)
        return None
    return {
        "index": found.index,
        "tree_size": found.size,
        "leaf_hash": found.leaf_hash.hex(),
        "root_hash": found.root_hash.hex(),
        "inclusion_path": [h.hex() for h in found.proof],
        "checkpoint": found.checkpoint,
    }


def _match(
    session: Session, row: ContentCredential, score: int, proof: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "manifestId": row.manifest_id,
        "similarityScore": score,
        "tiergate": {
            "call_id": row.call_id,
            "choice_index": row.choice_index,
            "log_index": row.log_index,
            "text_sha256": row.text_sha256,
            "inclusion_proof": proof if proof is not None else _proof(session, row.log_index),
        },
    }


def matches_by_binding(
    session: Session, *, alg: str, value: str, max_results: int | None
) -> dict[str, Any]:
    _check_alg(alg)
    key_id, payload = _parse_value(value)
    limit = min(max_results or MAX_RESULTS, MAX_RESULTS)
    rows = credentials_with_binding(session, key_id, payload, limit=limit)
    return {"matches": [_match(session, row, 100, None) for row in rows]}


def matches_by_content(
    session: Session,
    runtime: detection.DetectionRuntime,
    *,
    text: str,
    alg: str | None,
    max_results: int | None,
    now: datetime,
) -> dict[str, Any]:
    """Run the watermark detector over ``text``; the manifest of each call it attributes.

    Only a watermark verdict at the detector's strict level (p <= 1e-6, corrected) resolves.
    A C2PA text wrapper in ``text`` is removed first (its thousands of invisible characters
    would dilute the score; the watermark is the binding looked up); one that does not
    decode is refused (422 ``c2pa_wrapper_invalid``).
    """
    _check_alg(alg)
    if len(text) > MAX_CONTENT_CHARS:
        raise ResolutionTextTooLarge(
            f"at most {MAX_CONTENT_CHARS} characters of text are resolved per request"
        )
    _, text = extract_from_text(text)
    verdict = detection.detect(
        session, None, runtime, text=text, token_ids=None, model=None, alpha=1e-6, now=now
    )
    found = ([verdict.attribution] if verdict.attribution else []) + list(verdict.ambiguous)
    limit = min(max_results or MAX_RESULTS, MAX_RESULTS)
    matches = []
    for attribution in found[:limit]:
        row = credential_for_choice(session, attribution.call_id, attribution.choice_index)
        if row is None:
            continue  # a call made before Content Credentials existed
        # 100 at p <= 1e-12, falling with the evidence; the proof is the detector's.
        score = max(1, min(100, round(-verdict.log10_p_value / 12 * 100)))
        matches.append(_match(session, row, score, attribution.inclusion_proof))
    return {"matches": matches}


def manifest_store(session: Session, manifest_id: str) -> bytes:
    return bytes(find_credential(session, manifest_id).store)
