"""Calling the generation API in tests: one completion, one log entry, the app with other
settings (shared by the generation test modules)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.db.models import LogEntry
from tests.conftest import Account
from tests.gateway.generation_fixtures import MODEL

__all__ = ["PROMPT", "app_with", "complete", "entry"]

PROMPT = "The release gateway"


def complete(client: TestClient, account: Account, **body: Any) -> Any:
    payload = {"model": MODEL, "prompt": PROMPT, "max_tokens": 12, **body}
    return client.post("/v1/completions", json=payload, headers=account.headers)


def entry(engine: Engine, index: int) -> dict[str, Any]:
    with Session(engine) as session:
        row = session.get(LogEntry, index)
        assert row is not None
        data: dict[str, Any] = json.loads(row.entry)
        return data


def app_with(app: FastAPI, **overrides: Any) -> FastAPI:
    from gateway.app import create_app

    state = app.state.gateway
    settings = state.settings.model_copy(update=overrides)
    made: FastAPI = create_app(settings, engine=state.engine, keyring=state.keyring)
    return made
