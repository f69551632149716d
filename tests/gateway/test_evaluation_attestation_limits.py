"""Evaluation attestation submissions are rate limited per account and per address, charged
before the envelope is parsed or any signature is checked (the attack: a flood of 8 MB
attestations, each of which would be parsed and checked against every registered key)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import LogEntry
from gateway.db.timeutil import utcnow
from gateway.deps import get_now
from gateway.services import evaluation_attestations
from tests.conftest import Account, write_test_watermark_key
from tests.gateway.generation_fixtures import generation_release  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

EVALUATIONS = "/api/releases/acme/chatty/1.0.0/evaluations"
EIGHT_MIB = evaluation_attestations.MAX_ATTESTATION_BYTES


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> object:
    """Small budgets, and a body limit above 8 MiB so the large envelopes reach the service."""
    from gateway.config import Settings

    made = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_level="warning",
        max_body_bytes=2 * EIGHT_MIB,
        rate_limit_eval_attestations_per_account=3,
        rate_limit_eval_attestations_per_address=5,
    )
    write_test_watermark_key(made.resolved_keys_dir)
    return made


def _large_envelope(size: int) -> bytes:
    """A syntactically plausible DSSE envelope of about ``size`` bytes."""
    head = b'{"payloadType":"application/vnd.in-toto+json","signatures":[],"payload":"'
    return head + b"A" * (size - len(head) - 2) + b'"}'


def _submit(client: TestClient, account: Account, data: bytes) -> Any:
    return client.post(
        EVALUATIONS, content=data, headers={**account.headers, "Content-Type": "application/json"}
    )


def test_a_flood_of_8mb_attestations_is_refused_per_account_and_per_address(
    app: FastAPI,
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flooder, neighbour = make_account("flooder"), make_account("neighbour")
    checked: list[bytes] = []
    classify = evaluation_attestations._classify

    def counting_classify(session: Session, envelope: bytes, *args: Any) -> Any:
        checked.append(envelope)
        return classify(session, envelope, *args)

    monkeypatch.setattr(evaluation_attestations, "_classify", counting_classify)
    # One instant for the whole test, so no window boundary resets the counters mid-way.
    fixed = utcnow()
    app.dependency_overrides[get_now] = lambda: fixed

    # Over the size limit: refused (413) but charged.
    too_large = _submit(client, flooder, _large_envelope(EIGHT_MIB + 1))
    assert too_large.status_code == 413, too_large.text
    # Within the size limit: parsed, refused as invalid (no signatures), charged.
    for _ in range(2):
        got = _submit(client, flooder, _large_envelope(EIGHT_MIB - 16))
        assert got.status_code == 422, got.text
    assert len(checked) == 2
    over = _submit(client, flooder, _large_envelope(EIGHT_MIB - 16))
    assert over.status_code == 429, over.text
    assert over.json()["code"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1
    # Refused before parsing: the fourth envelope never reached the signature check.
    assert len(checked) == 2

    # Another account at the same address: its own budget, but the address has 1 of its 5
    # left (the refused submissions counted too).
    assert _submit(client, neighbour, b"{}").status_code == 422
    blocked = _submit(client, neighbour, b"{}")
    assert blocked.status_code == 429, blocked.text
    assert len(checked) == 3

    with Session(engine) as session:
        attested = session.exec(
            select(LogEntry).where(LogEntry.action == "evaluation.attested")
        ).all()
    assert attested == []
    assert json.loads(blocked.text)["retry_after"] >= 1
    app.dependency_overrides.pop(get_now)
