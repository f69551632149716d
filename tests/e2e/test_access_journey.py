"""The gated-access journey from the CLI against a real server, on SQLite and PostgreSQL.

A developer with a registered key is auto-approved on one model and queued on another; the
publisher approves, denies and revokes; each outcome is visible to the right person only. A
service then reaches the same API with an OAuth client-credentials token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from click.testing import CliRunner, Result
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from gateway.cli.main import cli, main
from gateway.config import Settings
from tests.conftest import Account, LiveServer
from tests.gateway.release_fixtures import publish_test_release

pytestmark = pytest.mark.e2e
MakeAccount = Callable[..., Account]
FIELDS = ["--field", "org=Example Labs", "--field", "use=research", "--field", "country=FR"]
FIELDS += ["--field", "agree=true"]


def tiergate(server: LiveServer, who: Account, *args: str) -> Result:
    env = {"TIERGATE_GATEWAY": server.url, "TIERGATE_TOKEN": who.token}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
    return result


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_access_journey_from_the_cli(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    live_server: LiveServer,
    make_account: MakeAccount,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    dev = make_account("dev")
    other = make_account("other")
    publish_test_release(app, engine, publisher, tmp_path, repo_id="acme/auto")
    manual = publish_test_release(
        app, engine, publisher, tmp_path, repo_id="acme/manual", mode="manual"
    )

    key = tmp_path / "dev.pem"
    ok(tiergate(live_server, dev, "keys", "generate", "--out", str(key), "--type", "ed25519"))
    key_id = ok(tiergate(live_server, dev, "keys", "register", str(tmp_path / "dev.pub.pem")))
    assert re.search(r"^[0-9a-f]{64}$", key_id, re.MULTILINE)

    terms = ok(tiergate(live_server, dev, "access", "terms", "acme/manual@1.0.0"))
    assert manual.release_digest in terms
    assert "--field country=" in terms

    auto = ok(
        tiergate(
            live_server, dev, "access", "request", "acme/auto", "--key", str(key), *FIELDS, "--yes"
        )
    )
    assert "approved" in auto
    queued = ok(
        tiergate(
            live_server,
            dev,
            "access",
            "request",
            "acme/manual@1.0.0",
            "--key",
            str(key),
            *FIELDS,
            "--yes",
        )
    )
    assert "pending" in queued
    queued_id = re.search(r"request (\d+)", queued).group(1)  # type: ignore[union-attr]

    # Nobody else sees the developer's requests; a developer cannot review.
    seen = json.loads(ok(tiergate(live_server, other, "access", "status", "--json")))
    assert seen == {"requests": [], "grants": []}
    empty = ok(tiergate(live_server, other, "access", "status"))
    assert empty == "no access requests\n\nno grants\n"
    refused = tiergate(live_server, dev, "access", "approve", queued_id)
    assert refused.exit_code != 0
    assert getattr(refused.exception, "code", None) == "insufficient_scope"

    pending = ok(tiergate(live_server, publisher, "access", "list", "--pending"))
    assert re.search(rf"^{queued_id}\s+pending\s+acme/manual", pending, re.MULTILINE)
    assert "acme/auto" not in pending
    listed = json.loads(
        ok(tiergate(live_server, publisher, "access", "list", "--pending", "--json"))
    )
    assert [r["id"] for r in listed["requests"]] == [int(queued_id)]
    approved = ok(tiergate(live_server, publisher, "access", "approve", queued_id))
    assert "active" in approved
    grant_id = re.search(r"grant\s+(\d+)", approved).group(1)  # type: ignore[union-attr]

    second = ok(
        tiergate(
            live_server,
            dev,
            "access",
            "request",
            "acme/manual",
            "--key",
            str(key),
            *FIELDS,
            "--yes",
        )
    )
    second_id = re.search(r"request (\d+)", second).group(1)  # type: ignore[union-attr]
    ok(tiergate(live_server, publisher, "access", "deny", second_id, "--reason", "one is enough"))
    ok(tiergate(live_server, publisher, "access", "revoke", grant_id, "--reason", "audit"))
    status = ok(tiergate(live_server, dev, "access", "status"))
    assert "denied" in status
    assert "one is enough" in status
    assert re.search(rf"^{grant_id}\s+revoked\s", status, re.MULTILINE)
    assert re.search(r"^\d+\s+active\s+acme/auto", status, re.MULTILINE)
    # Expiry as a duration, not a timestamp.
    assert re.search(r"active\s+acme/auto\S+\s+dev\s+in \d+m \d+s", status)

    # The publisher tightens the auto tier's policy: a new version, which decides from now on.
    policy = ok(
        tiergate(
            live_server, publisher, "access", "policy", "acme/auto@1.0.0", "--deny", "country=FR"
        )
    )
    assert policy.startswith("v2  ")
    assert "country in ['FR']" in policy
    assert policy.rstrip().endswith("(by pub)")
    refused_fr = ok(
        tiergate(
            live_server, dev, "access", "request", "acme/auto", "--key", str(key), *FIELDS, "--yes"
        )
    )
    assert "denied" in refused_fr
    history = ok(tiergate(live_server, publisher, "access", "policy", "acme/auto@1.0.0"))
    assert history.splitlines()[0].endswith("(by the release statement)")

    # Errors are one line with the server's detail and code.
    monkeypatch.setenv("TIERGATE_GATEWAY", live_server.url)
    monkeypatch.setenv("TIERGATE_TOKEN", other.token)
    with pytest.raises(SystemExit):
        main(["access", "deny", queued_id, "--reason", "x"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error [insufficient_scope]:")
    assert "\n" not in err

    # A service: an OAuth client of the developer, with a short-lived JWT.
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TIERGATE_DATABASE_URL", settings.resolved_database_url)
    created = CliRunner().invoke(
        cli, ["admin", "create-client", "--user", "dev", "--scope", "read"], catch_exceptions=False
    )
    assert created.exit_code == 0, created.output
    values = dict(re.findall(r"(client_id|client_secret)=(\S+)", created.output))
    with httpx.Client(base_url=live_server.url) as http:
        issued = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(values["client_id"], values["client_secret"]),
        )
        assert issued.status_code == 200, issued.text
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        grants = http.get("/api/access/grants", headers=bearer).json()
        assert {g["state"] for g in grants} == {"active", "revoked"}
        me = http.get("/api/whoami", headers=bearer).json()
        assert (me["username"], me["auth_method"], me["scopes"]) == ("dev", "oauth", ["read"])
    # An off-the-shelf OAuth client (authlib's, client_secret_post) gets a working token too.
    post_auth = {"token_endpoint_auth_method": "client_secret_post"}
    with OAuth2Client(values["client_id"], values["client_secret"], **post_auth) as oauth_client:
        fetched = oauth_client.fetch_token(
            f"{live_server.url}/oauth/token", grant_type="client_credentials"
        )
        assert fetched["token_type"] == "Bearer"
        assert oauth_client.get(f"{live_server.url}/api/access/grants").status_code == 200
