"""The web attestation form survives another writer committing while it decides (SQLite).

It used to wrap the use case in a SAVEPOINT: on SQLite that opens a deferred transaction
whose first read pins a snapshot, so a commit by anyone else (the ledger, a rate-limit
counter, another replica) before its first write made that write fail: a 503 page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gateway.services import access
from licensing.keys import PrivateKey
from tests.conftest import Account
from tests.gateway.release_fixtures import publish_test_release
from tests.web.test_pages import attestation, post_form, sign_in


def test_attestation_form_survives_a_commit_between_its_reads_and_its_write(
    app: Any,
    engine: Engine,
    client: TestClient,
    web_account: Callable[..., Account],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pat = web_account("pat", "publisher", "acme")
    release = publish_test_release(app, engine, pat, tmp_path, mode="manual")
    web_account("dev")
    dev = sign_in(client, "dev")
    key = PrivateKey.generate("ed25519")
    post_form(dev, "/account", "/account/keys", {"pem": key.public_key.to_pem().decode()})

    real_keys = access._account_keys

    def keys_then_someone_else_commits(*args: Any, **kwargs: Any) -> Any:
        found = real_keys(*args, **kwargs)  # the use case has read the release by now
        with engine.begin() as other:  # another writer commits in between
            other.execute(
                text(
                    "INSERT INTO rate_limits (bucket, window_start, count) "
                    "VALUES ('concurrent-writer', 0, 1)"
                )
            )
        return found

    monkeypatch.setattr(access, "_account_keys", keys_then_someone_else_commits)
    form = "/access/request/acme/tiny/1.0.0/optimized"
    sent = post_form(dev, form, form, {"attestation": attestation(key, release, "dev")})
    assert sent.status_code == 303, sent.text[:500]
    assert sent.headers["location"] == "/access?done=pending"
