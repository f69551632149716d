"""The one rule on tokenizers that do not round-trip: read what the release statement signed
about it, refuse watermarked generation where detection from text would be unreliable, and
tell the detector how far a negative verdict from text can be trusted for a release.

The figures come from the publisher's build (``release.tokenization_check``) and are signed
in the statement's ``tokenization`` member. A release published before that member existed
carries none: it is served as before (nothing measured, nothing refused), and the detector
says the round trip is unknown.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from gateway.db.models import Release
from gateway.errors import Conflict

__all__ = [
    "TextDetectionUnreliable",
    "TokenizationRecord",
    "check_generation_allowed",
    "tokenization_record",
]


_releases = Release.__table__.c  # type: ignore[attr-defined]


class TextDetectionUnreliable(Conflict):
    """409: the release's tokenizer does not round-trip its sampled text and the publisher
    did not override, so the gateway will not watermark (and so not serve) generation."""

    code = "text_detection_unreliable"
    title = "Detection from text would be unreliable"


@dataclass(frozen=True)
class TokenizationRecord:
    """The signed ``tokenization`` member of a release statement (empty: not measured)."""

    values: dict[str, str]

    @property
    def measured(self) -> bool:
        return bool(self.values)

    @property
    def text_detection(self) -> str:
        """``reliable``, ``unreliable``, ``override``, or ``unknown`` (not measured)."""
        return self.values.get("text_detection", "unknown")

    @property
    def rate(self) -> float | None:
        try:
            return float(self.values["roundtrip_rate"])
        except (KeyError, ValueError):
            return None


def tokenization_record(statement_envelope: str) -> TokenizationRecord:
    """The ``tokenization`` member of a stored (already verified) statement envelope."""
    try:
        envelope = json.loads(statement_envelope)
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        raw = statement["predicate"].get("tokenization") or {}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return TokenizationRecord({})
    if not isinstance(raw, dict):
        return TokenizationRecord({})
    return TokenizationRecord({str(k): str(v) for k, v in raw.items()})


def check_generation_allowed(engine: Engine, release_id: int) -> TokenizationRecord:
    """Raise :class:`TextDetectionUnreliable` for a release whose statement records an
    unreliable round trip without the publisher's override; return the record otherwise."""
    with engine.connect() as connection:
        envelope = connection.execute(
            select(_releases.statement_envelope).where(_releases.id == release_id)
        ).scalar_one_or_none()
    record = tokenization_record(envelope or "")
    if record.text_detection == "unreliable":
        rate = record.rate
        shown = f"{rate:.1%}" if rate is not None else "too few"
        raise TextDetectionUnreliable(
            f"this release's tokenizer round-trips only {shown} of sampled tokens "
            f"(threshold {record.values.get('threshold', '?')}): its watermark could not be "
            "detected from text, so the gateway does not generate with it; the publisher can "
            "republish with --allow-unreliable-text-detection",
            extra={"roundtrip_rate": record.values.get("roundtrip_rate")},
        )
    return record
