"""Check a transparency-log inclusion proof offline: its shapes, the signed checkpoint, the path.

The second half of :mod:`gateway.services.provenance_verify` (which re-exports all of it):
a proof in any shape the gateway hands out is normalized to :class:`LogProof`, its checkpoint
note is opened with the log's verifier key, and its audit path is checked against the entry
the signed manifest names. Imports only :mod:`licensing.tlog` (no database, no web stack).

Error classes (all ``ValidationFailed`` subclasses, 422)::

    LogProofMissing        c2pa_log_proof_missing
    CheckpointUnverified   c2pa_checkpoint_unverified
    LogProofMismatch       c2pa_log_proof_mismatch
    LogProofInvalid        c2pa_log_proof_invalid
"""

from __future__ import annotations

import binascii
import hmac
import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import ValidationFailed
from licensing.errors import TransparencyLogError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.merkle import leaf_hash, verify_inclusion
from licensing.tlog.note import Verifier

__all__ = [
    "CheckpointUnverified",
    "LogProof",
    "LogProofInvalid",
    "LogProofMismatch",
    "LogProofMissing",
    "open_log_checkpoint",
    "parse_log_proof",
    "proof_int",
    "verify_log_proof",
]

_MAX_PATH = 64  # a tree of 2**64 leaves has no longer audit path


class LogProofMissing(ValidationFailed):
    """No log inclusion proof, or a document that is none of the shapes the gateway returns."""

    code = "c2pa_log_proof_missing"
    title = "No log inclusion proof"


class CheckpointUnverified(ValidationFailed):
    """The proof's checkpoint note is not signed by the log key given (or does not parse)."""

    code = "c2pa_checkpoint_unverified"
    title = "Checkpoint signature does not verify"


class LogProofMismatch(ValidationFailed):
    """A valid-looking proof for another log entry than the one the manifest names."""

    code = "c2pa_log_proof_mismatch"
    title = "Log proof is for another entry"


class LogProofInvalid(ValidationFailed):
    """The audit path does not lead from the leaf to the signed checkpoint's root."""

    code = "c2pa_log_proof_invalid"
    title = "Log inclusion proof does not verify"


@dataclass(frozen=True)
class LogProof:
    """An inclusion proof as the gateway hands it out, normalized.

    ``entry`` is the logged entry itself when the proof came as a ``/log/receipt`` answer;
    a soft-binding match carries only the leaf hash (the entry may be private)."""

    index: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    checkpoint: str
    tree_size: int | None = None
    entry: bytes | None = None


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise LogProofMissing(f"the proof's {what} is not a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise LogProofMissing(f"the proof's {what} is not hex") from exc


def proof_int(value: Any, what: str) -> int:
    """A non-negative integer field of a proof (or of the manifest's generation assertion)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LogProofMissing(f"the proof's {what} is not a non-negative integer")
    return value


def _from_inclusion(body: dict[str, Any]) -> LogProof:
    path = body.get("inclusion_path")
    if not isinstance(path, list) or len(path) > _MAX_PATH:
        raise LogProofMissing("the proof's inclusion_path is not a list of at most 64 hashes")
    note = body.get("checkpoint")
    if not isinstance(note, str):
        raise LogProofMissing("the proof carries no checkpoint note")
    size = body.get("tree_size")
    return LogProof(
        index=proof_int(body.get("index"), "index"),
        leaf_hash=_hex(body.get("leaf_hash"), "leaf_hash"),
        path=tuple(_hex(h, "inclusion_path hash") for h in path),
        checkpoint=note,
        tree_size=None if size is None else proof_int(size, "tree_size"),
    )


def _from_receipt(body: dict[str, Any]) -> LogProof:
    from licensing.tlog.receipt import parse_receipt

    entry = body.get("entry")
    if not isinstance(entry, str):
        raise LogProofMissing("the receipt carries no entry")
    try:
        parsed = parse_receipt(str(body.get("receipt")))
    except TransparencyLogError as exc:
        raise LogProofMissing(f"the receipt does not parse: {exc}") from exc
    raw = entry.encode("utf-8")
    return LogProof(
        index=parsed.index,
        leaf_hash=leaf_hash(raw),
        path=tuple(parsed.inclusion_proof),
        checkpoint=parsed.checkpoint_note,
        entry=raw,
    )


def parse_log_proof(document: Any, manifest_id: str | None = None) -> LogProof:
    """The proof in any shape the gateway returns it.

    A ``/c2pa/v1/matches/...`` answer (the match for ``manifest_id``, else the first), one
    match of it, its ``tiergate.inclusion_proof`` object, or a ``/log/receipt/{index}`` answer
    (``entry`` + c2sp.org/tlog-proof ``receipt``: then the leaf is hashed from the entry).
    """
    if not isinstance(document, dict):
        raise LogProofMissing("the proof document is not a JSON object")
    if "matches" in document:
        matches = [m for m in document["matches"] or [] if isinstance(m, dict)]
        chosen = [m for m in matches if m.get("manifestId") == manifest_id] or matches[:1]
        if not chosen:
            raise LogProofMissing("the resolution answer has no match")
        document = chosen[0]
    if "tiergate" in document:
        inner = (document.get("tiergate") or {}).get("inclusion_proof")
        if not isinstance(inner, dict):
            raise LogProofMissing(
                "the match carries no inclusion proof (its call is not in a checkpoint yet)"
            )
        document = inner
    if "receipt" in document:
        return _from_receipt(document)
    if "inclusion_path" in document:
        return _from_inclusion(document)
    raise LogProofMissing(
        "the proof is none of: a resolution answer, a match, an inclusion_proof, a receipt"
    )


def open_log_checkpoint(note: str, log_vkey: str) -> Checkpoint:
    """The checkpoint in ``note`` once its signature by the log key verifies."""
    try:
        verifier = Verifier.from_vkey(log_vkey.strip())
    except TransparencyLogError as exc:
        raise CheckpointUnverified(f"the log key is not a note verifier key: {exc}") from exc
    try:
        return open_checkpoint(note, [verifier])
    except TransparencyLogError as exc:
        raise CheckpointUnverified(f"the checkpoint is not signed by the log key: {exc}") from exc


def verify_log_proof(
    proof: LogProof, *, log_index: int, call_id: str, log_vkey: str
) -> tuple[Checkpoint, list[str]]:
    """Check ``proof`` for the entry ``log_index`` (of ``call_id``) against the log key."""
    checks = []
    checkpoint = open_log_checkpoint(proof.checkpoint, log_vkey)
    checks.append(f"checkpoint {checkpoint.origin} size {checkpoint.size} is signed by the log key")
    if proof.index != log_index:
        raise LogProofMismatch(
            f"the proof is for log entry {proof.index}; the manifest names entry {log_index}"
        )
    if proof.tree_size is not None and proof.tree_size != checkpoint.size:
        raise LogProofInvalid(
            f"the proof is for a tree of {proof.tree_size} leaves; "
            f"the checkpoint signs {checkpoint.size}"
        )
    if proof.entry is not None:
        try:
            logged = json.loads(proof.entry)
            logged_call = logged.get("fields", {}).get("call_id")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise LogProofMismatch("the receipt's entry is not a tiergate log entry") from exc
        if logged_call != call_id:
            raise LogProofMismatch(
                f"the receipt's entry logs call {str(logged_call)[:80]!r}, not {call_id!r}"
            )
        if not hmac.compare_digest(leaf_hash(proof.entry), proof.leaf_hash):
            raise LogProofInvalid("the receipt's entry does not hash to its leaf")
    try:
        verify_inclusion(
            proof.leaf_hash, proof.index, checkpoint.size, list(proof.path), checkpoint.root_hash
        )
    except (TransparencyLogError, binascii.Error) as exc:
        raise LogProofInvalid(f"the inclusion proof does not verify: {exc}") from exc
    what = "the logged entry" if proof.entry is not None else "the leaf"
    checks.append(
        f"{what} at index {proof.index} is included in that checkpoint (audit path verified)"
    )
    return checkpoint, checks
