"""The ``detection.performed`` log entry, one shape for every watermark scheme's detector.

The input is logged as a digest only (text or token ids), never verbatim; each scheme adds
its own public fields (never a key).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.ledger.events import Actor, digest_of, record_event

__all__ = ["log_detection"]


def log_detection(
    session: Session,
    principal: Principal | None,
    now: datetime,
    *,
    text: str | None,
    token_ids: list[int] | None,
    model: str | None,
    fields: dict[str, Any],
) -> None:
    """Append the entry: the input's digest and kind, the model asked about, then ``fields``."""
    record_event(
        session,
        action="detection.performed",
        actor=Actor.of(principal),
        resource="watermark:detect",
        now=now,
        fields={
            "input_sha256": digest_of(text if text is not None else json.dumps(token_ids)),
            "input": "text" if text is not None else "token_ids",
            "model": model,
            **fields,
        },
    )
