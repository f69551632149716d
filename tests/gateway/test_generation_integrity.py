"""What a failure leaves behind in the generation API: tampered model files are refused and
rebuilt, no database connection is held while generating, an unsigned call is not logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import GenerationCall, LogEntry
from tests.conftest import Account
from tests.gateway.generation_calls import app_with, complete


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tampered_model_files_are_refused_then_rebuilt_from_blobs(
    app: FastAPI, client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    assert complete(client, dev).status_code == 200
    cache_dir = app.state.gateway.settings.data_dir / "model-cache"
    (folder,) = [p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    config = folder / "config.json"
    config.unlink()  # a hard link to the blob: replace it, never write through it
    config.write_text('{"model_type": "llama", "evil": true}')
    # A fresh process (empty memory cache) must verify the folder before loading it.
    with TestClient(app_with(app), raise_server_exceptions=False) as fresh:
        refused = complete(fresh, dev)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "model_not_verified"
        assert "config.json" in refused.json()["error"]["message"]
        assert complete(fresh, dev).status_code == 200  # rebuilt from the stored blobs


def test_a_completion_holds_no_database_connection_while_it_generates(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression (issue 17 overhead benchmark): the request's authentication session kept its
    pooled connection until the response, so concurrent completions exhausted the pool."""
    from gateway.services import generation as service

    checked_out: list[int] = []
    original = service.run_jobs

    def recording(*args: Any, **kwargs: Any) -> Any:
        # The gateway's background work (log integration every half second) takes a pooled
        # connection now and then; the request's own would stay checked out for the whole
        # generation, which is blocked here. So wait (bounded) for the count to fall to zero:
        # a leak never does.
        import time

        seen = engine.pool.checkedout()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while seen and time.monotonic() < deadline:
            time.sleep(0.01)
            seen = engine.pool.checkedout()  # type: ignore[attr-defined]
        checked_out.append(seen)
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "run_jobs", recording)
    dev = make_account("dev")
    response = complete(client, dev)
    assert response.status_code == 200, response.text
    assert checked_out == [0]


def test_a_call_whose_credential_cannot_be_signed_is_not_logged(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18: credentials are signed in the call's log transaction, so a signing failure
    rolls the whole call back (no entry, no call tags, no credential) and the client is told."""
    from gateway.services.provenance import CredentialSigningFailed

    def refuse(manifest: Any, text: str) -> bytes:
        raise CredentialSigningFailed("signing refused (test)")

    dev = make_account("dev")
    assert complete(client, dev).status_code == 200
    with Session(engine) as session:
        logged_before = len(session.exec(select(LogEntry)).all())
        calls_before = len(session.exec(select(GenerationCall)).all())
    provenance = client.app.state.provenance  # type: ignore[attr-defined]
    monkeypatch.setattr(provenance, "sign_text", refuse)
    refused = complete(client, dev)
    assert refused.status_code == 500, refused.text
    assert "c2pa_signing_failed" in refused.text
    with Session(engine) as session:
        assert len(session.exec(select(GenerationCall)).all()) == calls_before
        entries = session.exec(select(LogEntry).where(LogEntry.idx >= logged_before)).all()
        assert [e.action for e in entries if e.action == "generation.completed"] == []
