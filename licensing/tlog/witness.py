"""C2SP tlog-witness: the add-checkpoint request and the witness's decision, without any I/O.

A request body is ``old <size>\\n``, up to 63 base64 consistency-proof lines, a blank line and
the signed checkpoint. The witness checks, in the spec's order: the origin is a known log
(else 404), a trusted log key signed it (403), ``old`` is not past the checkpoint size (400),
``old`` is the size it last cosigned (409 with that size), and the proof verifies from its
stored root (422). Only then does it record the new checkpoint and return a cosignature line;
the caller must check-and-record atomically and persist before answering.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from licensing.errors import (
    TlogProofInvalidError,
    TransparencyLogError,
    WitnessConflictError,
    WitnessForbiddenError,
    WitnessProofInvalidError,
    WitnessRequestMalformedError,
    WitnessUnknownLogError,
)
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from licensing.tlog.cosignature import CosignatureSigner
from licensing.tlog.merkle import HASH_SIZE, verify_consistency
from licensing.tlog.note import MAX_NOTE_BYTES, Verifier, parse_note

__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "AddCheckpoint",
    "WitnessedCheckpoint",
    "add_checkpoint",
    "format_add_checkpoint",
    "parse_add_checkpoint",
]

#: The spec caps consistency proofs at 63 lines (a 64-level tree needs no more).
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = MAX_NOTE_BYTES + 64 * (MAX_PROOF_LINES + 1)
_MAX_SIZE_DIGITS = 20


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True, slots=True)
class WitnessedCheckpoint:
    """What a witness remembers per log: the latest checkpoint it cosigned."""

    origin: str
    size: int
    root_hash: bytes


def _size(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_SIZE_DIGITS:
        raise WitnessRequestMalformedError("size is not an ASCII decimal")
    if text != "0" and text.startswith("0"):
        raise WitnessRequestMalformedError("size has leading zeros")
    return int(text)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body a log POSTs to ``<prefix>/add-checkpoint``."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("".join(line + "\n" for line in lines) + "\n" + note).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request strictly; raise :class:`WitnessRequestMalformedError` (400)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise WitnessRequestMalformedError("request body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessRequestMalformedError("request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep or not head.startswith("old "):
        raise WitnessRequestMalformedError("request must start with an old size line")
    lines = head.split("\n")
    old_size = _size(lines[0][len("old ") :])
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessRequestMalformedError(f"more than {MAX_PROOF_LINES} proof lines")
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            value = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise WitnessRequestMalformedError("proof line is not base64") from None
        if len(value) != HASH_SIZE:
            raise WitnessRequestMalformedError(f"proof hashes must be {HASH_SIZE} bytes")
        proof.append(value)
    return AddCheckpoint(old_size, tuple(proof), note)


def add_checkpoint(
    request: AddCheckpoint,
    logs: Mapping[str, Sequence[Verifier]],
    latest: Mapping[str, WitnessedCheckpoint],
    signer: CosignatureSigner,
    *,
    now: int,
) -> tuple[WitnessedCheckpoint, str]:
    """Decide on one request: the state to record and the cosignature line to answer with.

    ``logs`` maps each known origin to its trusted keys; ``latest`` is the witness's state.
    Raises a :class:`~licensing.errors.WitnessError` whose ``status`` is the HTTP answer.
    """
    try:
        body = parse_note(request.note).text
        origin = parse_checkpoint(body).origin
    except TransparencyLogError as exc:
        raise WitnessRequestMalformedError(f"not a checkpoint note: {exc}") from None
    verifiers = logs.get(origin)
    if not verifiers:
        raise WitnessUnknownLogError(f"unknown log {origin!r}")
    try:
        checkpoint: Checkpoint = open_checkpoint(request.note, verifiers, origin=origin)
    except TransparencyLogError as exc:
        raise WitnessForbiddenError(f"checkpoint not signed by a trusted key: {exc}") from None
    if request.old_size > checkpoint.size:
        raise WitnessRequestMalformedError(
            f"old size {request.old_size} is past the checkpoint size {checkpoint.size}"
        )
    known = latest.get(origin)
    known_size = known.size if known is not None else 0
    if request.old_size != known_size:
        raise WitnessConflictError(
            f"old size {request.old_size} is not the latest cosigned size {known_size}",
            known_size,
        )
    if known is not None:
        try:
            verify_consistency(
                known.size, checkpoint.size, known.root_hash, checkpoint.root_hash, request.proof
            )
        except TlogProofInvalidError as exc:
            raise WitnessProofInvalidError(
                f"size {checkpoint.size} is not proven to extend size {known.size}: {exc}"
            ) from None
    elif request.proof:
        raise WitnessProofInvalidError("a proof from size 0 must be empty")
    state = WitnessedCheckpoint(origin, checkpoint.size, checkpoint.root_hash)
    return state, signer.cosign(body, now).line()
