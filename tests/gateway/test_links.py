"""Expiring download links through the app: issuance, serving, Range, and every bad link."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import DownloadLink, LogEntry
from gateway.db.timeutil import utcnow
from gateway.deps import get_now
from tests.conftest import Account
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    PublishedRelease,
    built_release,
    grant_access,
    published_release,
)

WEIGHTS = "model.safetensors"


def issue(client: TestClient, account: Account, **body: Any) -> dict[str, Any]:
    payload = {"repo_id": "acme/tiny", "tier": "optimized", "path": WEIGHTS, **body}
    response = client.post("/api/links", json=payload, headers=account.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def relative(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def assert_refused(response: Any, status: int, code: str, file_bytes: bytes) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert file_bytes[:64] not in response.content
    assert response.headers.get("cache-control") == "no-store"


def set_clock(app: FastAPI, moment: datetime) -> None:
    app.dependency_overrides[get_now] = lambda: moment


def test_gated_link_needs_a_grant_then_serves_the_file(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    dev = make_account("dev")
    payload = {"repo_id": "acme/tiny", "tier": "optimized", "path": WEIGHTS}
    assert client.post("/api/links", json=payload).status_code == 401
    refused = client.post("/api/links", json=payload, headers=dev.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "grant_required"
    assert refused.headers["x-error-code"] == "GatedRepo"

    grant_id = grant_access(engine, "dev")
    link = issue(client, dev)
    assert link["grant_id"] == grant_id
    assert link["url"].startswith("http")
    expected = published_release.built.tier_files("optimized")[WEIGHTS]
    assert link["size"] == len(expected)
    assert link["byte_budget"] == 3 * len(expected)

    response = client.get(relative(link["url"]))
    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["etag"] == f'"{link["sha256"]}"'
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert len(response.headers["x-repo-commit"]) == 40

    head = client.head(relative(link["url"]))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(expected))

    part = client.get(relative(link["url"]), headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == expected[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(expected)}"
    suffix = client.get(relative(link["url"]), headers={"Range": "bytes=-5"})
    assert suffix.status_code == 206
    assert suffix.content == expected[-5:]
    stale = client.get(
        relative(link["url"]), headers={"Range": "bytes=10-99", "If-Range": '"0000"'}
    )
    assert stale.status_code == 200
    assert stale.content == expected
    fresh = client.get(
        relative(link["url"]),
        headers={"Range": f"bytes={len(expected) - 10}-", "If-Range": f'"{link["sha256"]}"'},
    )
    assert fresh.status_code == 206
    assert fresh.content == expected[-10:]
    beyond = client.get(relative(link["url"]), headers={"Range": f"bytes={len(expected)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(expected)}"

    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(LogEntry).order_by(LogEntry.idx))]
        hits = [
            json.loads(e.entry)["fields"]
            for e in session.exec(select(LogEntry).where(LogEntry.action == "download.link"))
        ]
    assert "link.issued" in actions
    assert [h["method"] for h in hits] == ["GET", "HEAD", "GET", "GET", "GET", "GET"]
    assert hits[2]["range"] == f"bytes 10-99/{len(expected)}"
    assert hits[2]["bytes"] == 90


def test_bad_links_each_answer_a_distinct_code(
    app: FastAPI,
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    dev = make_account("dev")
    grant_id = grant_access(engine, "dev")
    expected = published_release.built.tier_files("optimized")[WEIGHTS]
    t0 = utcnow()
    set_clock(app, t0)
    link = issue(client, dev, ttl_seconds=600)
    url = relative(link["url"])
    path, token = url.split("?token=")

    def get(target: str, **kw: Any) -> Any:
        return client.get(target, **kw)

    prefix, kid, payload, mac = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    assert_refused(
        get(f"{path}?token={prefix}.{kid}.{flipped}.{mac}"), 401, "link_invalid_signature", expected
    )
    assert_refused(
        get(f"{path}?token={prefix}.9.{payload}.{mac}"), 401, "link_invalid_signature", expected
    )
    assert_refused(get(f"{path}?token={token[:40]}"), 401, "link_malformed", expected)
    assert_refused(get(path), 401, "link_malformed", expected)
    other = path.replace(WEIGHTS, "config.json")
    assert_refused(get(f"{other}?token={token}"), 403, "link_wrong_file", expected)
    other_tier = path.replace("/optimized/", "/open/")
    assert_refused(get(f"{other_tier}?token={token}"), 403, "link_wrong_file", expected)

    set_clock(app, t0 - timedelta(minutes=5))
    assert_refused(get(url), 401, "link_not_yet_valid", expected)
    set_clock(app, t0 + timedelta(seconds=601 + 30))
    assert_refused(get(url), 410, "link_expired", expected)
    set_clock(app, t0 + timedelta(seconds=10))  # inside the leeway-free window again
    assert get(url).status_code == 200

    # Budget: 3x the file; one full copy was served above.
    assert get(url).status_code == 200
    assert get(url).status_code == 200
    assert_refused(get(url), 403, "link_budget_exhausted", expected)
    assert get(url, headers={"Range": "bytes=0-0"}).status_code == 403

    second = issue(client, dev)
    revoked = client.post(
        f"/api/access/grants/{grant_id}/revoke",
        json={"reason": "leaked"},
        headers=published_release.publisher.headers,
    )
    assert revoked.status_code == 200, revoked.text
    assert_refused(get(relative(second["url"])), 410, "link_revoked", expected)
    app.dependency_overrides.clear()


def test_yank_kills_live_links_and_path_tricks_never_serve(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    dev = make_account("dev")
    grant_access(engine, "dev")
    link = issue(client, dev)
    url = relative(link["url"])
    path, token = url.split("?token=")
    base = path.rsplit("/", 1)[0]
    for trick in ("../open/" + WEIGHTS, "..%2F" + WEIGHTS, "a%2Fb", "x%00", "%2Fetc%2Fpasswd"):
        response = client.get(f"{base}/{trick}?token={token}")
        assert response.status_code in (400, 403, 404), (trick, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"
    for trick in ("..%2Fopen%2Fconfig.json", "%2Fetc%2Fpasswd", "a%5Cb", "x%00"):
        response = client.get(f"/acme/tiny/resolve/main/{trick}")
        assert response.status_code in (400, 404), (trick, response.status_code)
    yanked = client.post(
        "/api/releases/acme/tiny/1.0.0/yank",
        json={"reason": "broken"},
        headers=published_release.publisher.headers,
    )
    assert yanked.status_code == 200, yanked.text
    expected = published_release.built.tier_files("optimized")[WEIGHTS]
    assert_refused(client.get(url), 410, "release_yanked", expected)


def test_network_bound_links_and_key_rotation(
    app: FastAPI,
    published_release: PublishedRelease,  # noqa: F811
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    from dataclasses import replace

    dev = make_account("dev")
    grant_access(engine, "dev")
    with (
        TestClient(app, client=("10.1.2.3", 5000), raise_server_exceptions=False) as here,
        TestClient(app, client=("10.9.9.9", 5000), raise_server_exceptions=False) as there,
    ):
        link = issue(here, dev, bind_network=True)
        assert link["network"] == "10.1.2.0/24"
        url = relative(link["url"])
        assert here.head(url).status_code == 200
        response = there.get(url)
        assert response.status_code == 403
        assert response.json()["code"] == "link_wrong_network"

        state = app.state.gateway
        old = state.keyring
        # Rotation: a new key signs; links signed by the old one still verify...
        state.keyring = replace(
            old, link_keys={**old.link_keys, "2": b"k" * 32}, current_link_key_id="2"
        )
        new = issue(here, dev)
        assert new["key_id"] == "2"
        assert here.head(relative(new["url"])).status_code == 200
        assert here.head(url).status_code == 200
        # ...until the old key is dropped.
        state.keyring = replace(state.keyring, link_keys={"2": b"k" * 32})
        dropped = here.head(url)
        assert dropped.status_code == 401
        state.keyring = old
    with Session(engine) as session:
        rows = session.exec(select(DownloadLink)).all()
    assert {r.key_id for r in rows} == {"1", "2"}


def test_revisions_name_release_tiers(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
) -> None:
    for revision, tier in [
        ("main", "open"),
        ("1.0.0", "open"),
        ("optimized", "optimized"),
        ("1.0.0-optimized", "optimized"),
        ("1.0.0-open", "open"),
    ]:
        info = client.get(f"/api/models/acme/tiny/revision/{revision}").json()
        assert info["tiergate"]["tier"] == tier
        again = client.get(f"/api/models/acme/tiny/revision/{info['sha']}").json()
        assert again["tiergate"]["tier"] == tier
        assert again["sha"] == info["sha"]
        entry = client.head(f"/acme/tiny/resolve/{revision}/nope.bin")
        code = "GatedRepo" if tier == "optimized" else "EntryNotFound"
        assert entry.headers["x-error-code"] == code
    missing = client.get("/api/models/acme/tiny/revision/2.0.0")
    assert missing.status_code == 404
    assert missing.headers["x-error-code"] == "RevisionNotFound"
    assert client.get("/api/models/acme/nope").headers["x-error-code"] == "RepoNotFound"
    config = published_release.built.tier_files("open")["config.json"]
    part = client.get("/acme/tiny/resolve/main/config.json", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.content == config[:10]
    assert part.headers["x-linked-size"] == str(len(config))
    names: list[str] = []
    url: str | None = "/api/models/acme/tiny/tree/main?recursive=true&limit=3"
    while url:
        page = client.get(url)
        names += [entry["path"] for entry in page.json()]
        link = page.headers.get("link")
        url = link.split(">")[0].lstrip("<") if link else None
    # The signed files, model.sig, and the release's derived AI BOMs.
    expected = {*published_release.built.tier_files("open"), "aibom.cdx.json", "aibom.spdx.json"}
    assert names == sorted(expected)
    key = client.get("/api/releases/acme/tiny/1.0.0/key").json()
    assert key["pem"].encode() == published_release.built.public_pem
