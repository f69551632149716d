"""Call tags: the 20-bit watermark payload that resolves a text to the logged call that made it.

Each watermark key has a counter (``watermark_keys.next_tag``) bumped by one atomic
``UPDATE ... RETURNING``, so every process draws distinct tags. A tag is mapped to a payload
by an odd multiplier modulo ``2**bits`` (a bijection): consecutive calls get payloads far
apart in Hamming distance, so a decoding error rarely lands on a neighbouring real call.
Tags repeat after ``2**bits`` calls of one key; detection then reports every candidate.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from gateway.db.models import GenerationCall, WatermarkKeyRecord
from watermark import PayloadSettings

__all__ = [
    "CallChoice",
    "choices_with_payload",
    "choices_with_text_digest",
    "ensure_key_record",
    "issued_payload_count",
    "new_call_id",
    "payload_for_tag",
    "payloads_for_tags",
    "record_choices",
    "reserve_payloads",
    "symbols_for_payloads",
]

# Odd, so multiplication is a permutation of Z/2**bits; ~golden ratio spreads consecutive tags.
_MULTIPLIER = 0x9E3779B1
_OFFSET = 0x5A17
_INSERT_KEY = text(
    "INSERT INTO watermark_keys (key_id, release_id, tier, config_json, next_tag, created_at) "
    "VALUES (:key_id, :release_id, :tier, :config_json, 0, :now) "
    "ON CONFLICT (key_id) DO NOTHING"
)
_RESERVE = text(
    "UPDATE watermark_keys SET next_tag = next_tag + :n WHERE key_id = :key_id RETURNING next_tag"
)
# Core insert: ORM objects per choice cost more than the rest of the log append.
_INSERT_CALLS = insert(GenerationCall.__table__)  # type: ignore[attr-defined]


def new_call_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


def payload_for_tag(tag: int, bits: int) -> int:
    mask = (1 << bits) - 1
    return ((tag & mask) * _MULTIPLIER + _OFFSET) & mask


def payloads_for_tags(tags: npt.NDArray[np.uint64], bits: int) -> npt.NDArray[np.uint64]:
    mask = np.uint64((1 << bits) - 1)
    return ((tags & mask) * np.uint64(_MULTIPLIER) + np.uint64(_OFFSET)) & mask


def ensure_key_record(
    db: Connection | Session,
    *,
    key_id: str,
    release_id: int,
    tier: str,
    config_json: str,
    now: datetime,
) -> None:
    """Register a key on first use (idempotent across processes)."""
    db.execute(
        _INSERT_KEY,
        {
            "key_id": key_id,
            "release_id": release_id,
            "tier": tier,
            "config_json": config_json,
            "now": now,
        },
    )


def reserve_payloads(db: Connection | Session, key_id: str, n: int, bits: int) -> list[int]:
    """Draw ``n`` fresh tags (commit promptly: the key's row is locked until then)."""
    end = int(db.execute(_RESERVE, {"n": n, "key_id": key_id}).scalar_one())
    return [payload_for_tag(tag, bits) for tag in range(end - n, end)]


def issued_payload_count(session: Session, key_id: str) -> int:
    row = session.get(WatermarkKeyRecord, key_id)
    return 0 if row is None else int(row.next_tag)


@dataclass(frozen=True, slots=True)
class CallChoice:
    choice_index: int
    payload: int
    text_sha256: str | None = None  # the output's digest as logged (``digest_of`` its text)


def record_choices(
    session: Session,
    *,
    call_id: str,
    key_id: str,
    choices: list[CallChoice],
    log_index: int,
    user_id: int,
    release_id: int,
    tier: str,
    now: datetime,
) -> None:
    """Map each choice's call tag (and output digest) to its call and log entry (one
    multi-row insert)."""
    session.execute(
        _INSERT_CALLS,
        [
            {
                "call_id": call_id,
                "choice_index": choice.choice_index,
                "key_id": key_id,
                "payload": choice.payload,
                "log_index": log_index,
                "user_id": user_id,
                "release_id": release_id,
                "tier": tier,
                "created_at": now,
                "text_sha256": choice.text_sha256,
            }
            for choice in choices
        ],
    )


def choices_with_payload(
    session: Session, key_id: str, payload: int, *, limit: int = 16
) -> list[GenerationCall]:
    """Logged choices carrying ``payload`` under ``key_id``, newest first."""
    query = (
        select(GenerationCall)
        .where(GenerationCall.key_id == key_id, GenerationCall.payload == payload)
        .order_by(col(GenerationCall.id).desc())
        .limit(limit)
    )
    return list(session.exec(query))


def choices_with_text_digest(
    session: Session, text_sha256: str, *, limit: int = 64
) -> list[GenerationCall]:
    """Logged choices whose output digest is ``text_sha256`` (indexed), oldest first."""
    query = (
        select(GenerationCall)
        .where(GenerationCall.text_sha256 == text_sha256)
        .order_by(col(GenerationCall.log_index), col(GenerationCall.choice_index))
        .limit(limit)
    )
    return list(session.exec(query))


def symbols_for_payloads(
    payloads: npt.NDArray[np.uint64], settings: PayloadSettings
) -> npt.NDArray[np.int64]:
    """The coded symbols of many payloads at once (``payload_symbols``, vectorized).

    Shape ``(len(payloads), num_slots)``; CRC-8 (poly 0x07) over the data bits, MSB first.
    """
    p = payloads.astype(np.uint64)
    crc = np.zeros_like(p)
    one, poly, byte = np.uint64(1), np.uint64(0x07), np.uint64(0xFF)
    for i in range(settings.payload_bits - 1, -1, -1):
        bit = (p >> np.uint64(i)) & one
        top = (crc >> np.uint64(7)) & one
        crc = (crc << one) & byte
        crc ^= poly * (top ^ bit)
    coded = (p << np.uint64(settings.check_bits)) | crc
    b = settings.bits_per_symbol
    width = settings.num_slots * b
    coded = coded << np.uint64(width - settings.total_bits)
    mask = np.uint64(settings.num_colours - 1)
    columns = [(coded >> np.uint64(width - (i + 1) * b)) & mask for i in range(settings.num_slots)]
    return np.stack(columns, axis=1).astype(np.int64)
