"""A report's quoted output checked against the log: by output digest, then by watermark.

Every ``generation.completed`` entry carries the sha256 of each output text, and each logged
choice's row in ``generation_calls`` carries it too, indexed; an exact quote is found by it.
Edited or partial quotes fall through to watermark attribution
(:mod:`gateway.services.detection`, one home for the statistics). A verified quote says
"genuine output of ORG/NAME@VERSION, logged call N" with the entry's inclusion proof;
anything else says "not verified" and why. The answer names only the entry's public facts
(call id, log index, model, time, proof): never the other call's prompt, requester or other
outputs.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import GenerationCall, LogEntry, Release
from gateway.ledger.events import digest_of
from gateway.ledger.reads import inclusion
from gateway.services.detection import DetectionRuntime, detect

__all__ = ["WATERMARK_ALPHA", "not_verified", "verify_quote"]

log = logging.getLogger("tiergate.reports")
# A false verification by watermark needs a p-value under this on text the key never made.
WATERMARK_ALPHA = 1e-6


def _proof(session: Session, index: int) -> dict[str, Any] | None:
    try:
        found = inclusion(session, index, None)
    except Exception:  # not integrated yet, or no checkpoint: the index still stands
        return None
    return {
        "index": found.index,
        "tree_size": found.size,
        "leaf_hash": found.leaf_hash.hex(),
        "root_hash": found.root_hash.hex(),
        "inclusion_path": [h.hex() for h in found.proof],
        "checkpoint": found.checkpoint,
    }


def not_verified(reason: str) -> dict[str, Any]:
    return {"status": "not_verified", "statement": f"not verified: {reason}", "reason": reason}


def _verified(
    session: Session,
    *,
    method: str,
    model: str,
    call_id: str,
    log_index: int,
    time: str,
    **more: Any,
) -> dict[str, Any]:
    return {
        "status": "verified",
        "method": method,
        "statement": f"genuine output of {model}, logged call {log_index}",
        "model": model,
        "call_id": call_id,
        "log_index": log_index,
        "time": time,
        "inclusion_proof": _proof(session, log_index),
        **more,
    }


def _by_digest(
    session: Session, release: Release, quote: str, call_id: str | None
) -> dict[str, Any] | None:
    """The logged call whose output has exactly the quote's sha256, if any.

    Found by the indexed per-choice digest (``generation_calls.text_sha256``), then confirmed
    against the log entry itself: the entry, not the index, is what the answer vouches for."""
    digest = digest_of(quote)
    query = (
        select(LogEntry)
        .join(GenerationCall, col(GenerationCall.log_index) == col(LogEntry.idx))
        .where(GenerationCall.text_sha256 == digest)
        .where(GenerationCall.release_id == release.id)
        .where(LogEntry.action == "generation.completed")
        .where(LogEntry.org_id == release.org_id)
        .order_by(col(LogEntry.idx))
    )
    if call_id is not None:
        query = query.where(GenerationCall.call_id == call_id)
    for row in session.exec(query):
        fields = json.loads(row.entry).get("fields", {})
        model = fields.get("model", {})
        if model.get("repo_id") != release.repo_id or model.get("version") != release.version:
            continue
        if call_id is not None and fields.get("call_id") != call_id:
            continue
        if not any(o.get("sha256") == digest for o in fields.get("outputs", [])):
            continue  # the digest was in another field (a prompt digest): not an output
        return _verified(
            session,
            method="output_digest",
            model=f"{release.repo_id}@{release.version}",
            call_id=str(fields.get("call_id")),
            log_index=row.idx,
            time=json.loads(row.entry).get("time", ""),
            output_sha256=digest,
        )
    return None


def _by_watermark(
    session: Session,
    principal: Principal,
    runtime: DetectionRuntime,
    release: Release,
    quote: str,
    call_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    result = detect(
        session,
        principal,
        runtime,
        text=quote,
        token_ids=None,
        model=f"{release.repo_id}@{release.version}",
        alpha=WATERMARK_ALPHA,
        now=now,
    )
    call = result.attribution
    if not result.watermarked:
        return not_verified(
            f"the text is not a logged output of {release.repo_id}@{release.version}, and its "
            f"watermark test does not attribute it (verdict {result.verdict}, "
            f"{result.tokens_scored} tokens scored, p={result.p_value:.3g})"
        )
    if call is None:
        return not_verified("the watermark is present but no single logged call is attributed")
    if call_id is not None and call.call_id != call_id:
        return not_verified(f"the watermark attributes the text to another call than {call_id}")
    name = f"{release.repo_id}@{release.version}"
    return {
        **_verified(
            session,
            method="watermark",
            model=name,
            call_id=call.call_id,
            log_index=call.log_index,
            time=call.time,
            p_value=call.p_value,
            tokens_scored=result.tokens_scored,
        ),
        "inclusion_proof": call.inclusion_proof,
    }


def verify_quote(
    session: Session,
    principal: Principal,
    runtime: DetectionRuntime,
    release: Release,
    quote: str,
    call_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Digest first (exact and cheap), then the watermark (edited or partial quotes)."""
    try:  # a proof needs the call's entry in a signed tree; a call may have just been logged
        runtime.integrate()
    except Exception as exc:  # the log being unavailable must not hide the verification
        log.warning("log integration before a proof failed: %s", type(exc).__name__)
    found = _by_digest(session, release, quote, call_id)
    if found is not None:
        return found
    return _by_watermark(session, principal, runtime, release, quote, call_id, now)
