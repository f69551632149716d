"""Per-call receipts in the c2sp.org/tlog-proof@v1 format, verified offline with the log vkey."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from licensing.errors import ReceiptMalformedError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.merkle import HASH_SIZE, MAX_TREE_SIZE, leaf_hash, verify_inclusion
from licensing.tlog.note import MAX_NOTE_BYTES, Verifier

__all__ = [
    "HEADER",
    "MAX_PROOF_HASHES",
    "Receipt",
    "VerifiedReceipt",
    "format_receipt",
    "parse_receipt",
    "verify_receipt",
]

HEADER = "c2sp.org/tlog-proof@v1"
#: An audit path in a tree of at most 2**64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64
#: Header, extra, index and hashes stay far below this; the checkpoint note has its own bound.
_MAX_EXTRA_BYTES = 64 * 1024
_MAX_RECEIPT_BYTES = MAX_NOTE_BYTES + _MAX_EXTRA_BYTES + 4096


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed (unverified) tlog-proof: entry index, audit path, signed checkpoint, extra data."""

    index: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a receipt proves once verified: entry ``index`` is in the log at ``checkpoint``.

    ``extra`` is carried along but is NOT authenticated by the proof.
    """

    index: int
    checkpoint: Checkpoint
    extra: bytes | None


def format_receipt(
    index: int, inclusion_proof: Iterable[bytes], checkpoint_note: str, extra: bytes | None = None
) -> str:
    """Serialise a receipt; ``checkpoint_note`` is the signed checkpoint exactly as signed."""
    proof = list(inclusion_proof)
    if not 0 <= index <= MAX_TREE_SIZE:
        raise ReceiptMalformedError("index out of range")
    if any(len(h) != HASH_SIZE for h in proof) or len(proof) > MAX_PROOF_HASHES:
        raise ReceiptMalformedError("malformed inclusion proof")
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines.extend(base64.b64encode(h).decode() for h in proof)
    return "\n".join(lines) + "\n\n" + checkpoint_note


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ReceiptMalformedError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise ReceiptMalformedError(f"{what} is not canonical base64")
    return raw


def parse_receipt(data: str | bytes) -> Receipt:
    """Parse a receipt strictly, without verifying the checkpoint or the proof."""
    if len(data) > _MAX_RECEIPT_BYTES:
        raise ReceiptMalformedError("receipt is too large")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ReceiptMalformedError("receipt is not valid UTF-8") from None
    header, sep, rest = data.partition("\n")
    if header != HEADER or not sep:
        raise ReceiptMalformedError(f"receipt must start with {HEADER!r}")
    line, sep, rest = rest.partition("\n")
    extra = None
    if line.startswith("extra "):
        encoded = line[len("extra ") :]
        if len(encoded) > _MAX_EXTRA_BYTES * 4 // 3 + 4:
            raise ReceiptMalformedError("extra data is too large")
        extra = _b64(encoded, "extra data")
        line, sep, rest = rest.partition("\n")
    if not sep or not line.startswith("index "):
        raise ReceiptMalformedError("receipt lacks its index line")
    index_text = line[len("index ") :]
    if (
        not index_text.isascii()
        or not index_text.isdigit()
        or (index_text != "0" and index_text.startswith("0"))
        or len(index_text) > 20
        or int(index_text) > MAX_TREE_SIZE
    ):
        raise ReceiptMalformedError("index must be a decimal uint64 without leading zeros")
    hashes: list[bytes] = []
    while True:
        line, sep, rest = rest.partition("\n")
        if not sep:
            raise ReceiptMalformedError("receipt lacks the blank line before its checkpoint")
        if not line:
            break
        if len(hashes) == MAX_PROOF_HASHES:
            raise ReceiptMalformedError("inclusion proof is too long")
        h = _b64(line, "inclusion proof hash")
        if len(h) != HASH_SIZE:
            raise ReceiptMalformedError(f"inclusion proof hashes must be {HASH_SIZE} bytes")
        hashes.append(h)
    if not rest:
        raise ReceiptMalformedError("receipt lacks its checkpoint")
    return Receipt(int(index_text), tuple(hashes), rest, extra)


def verify_receipt(
    entry: bytes,
    receipt: str | bytes,
    verifiers: Iterable[Verifier],
    *,
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify offline that ``entry`` is in the log, given the log's trusted verifier key(s).

    Raises a :class:`~licensing.errors.TransparencyLogError` subclass on any failure.
    """
    parsed = parse_receipt(receipt)
    checkpoint = open_checkpoint(parsed.checkpoint_note, verifiers, origin=origin)
    verify_inclusion(
        leaf_hash(entry),
        parsed.index,
        checkpoint.size,
        parsed.inclusion_proof,
        checkpoint.root_hash,
    )
    return VerifiedReceipt(index=parsed.index, checkpoint=checkpoint, extra=parsed.extra)
