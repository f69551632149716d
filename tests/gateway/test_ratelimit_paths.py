"""Issue #14 item 7: a limit lives in the service, so every path to the work shares its counter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from gateway.config import Settings
from gateway.db.models import DownloadLink, LogEntry
from tests.conftest import Account
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    PublishedRelease,
    built_release,
    grant_access,
    published_release,
)
from tests.gateway.test_health_and_errors import assert_problem
from tests.web.conftest import csrf_of, set_password, sign_in

MakeAccount = Callable[..., Account]
WEIGHTS = "model.safetensors"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_level="warning",
        rate_limit_window_seconds=3600,
        rate_limit_links_per_account=2,
        rate_limit_attestations_per_account=2,
        rate_limit_detections_per_account=2,
    )


def links_and_entries(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        links = session.exec(select(func.count()).select_from(DownloadLink)).one()
        issued = session.exec(
            select(func.count()).select_from(LogEntry).where(LogEntry.action == "link.issued")
        ).one()
    return int(links), int(issued)


def test_hub_resolve_path_cannot_bypass_the_link_limit(
    client: TestClient,
    engine: Engine,
    published_release: PublishedRelease,  # noqa: F811
    make_account: MakeAccount,
) -> None:
    dev = make_account("dev")
    grant_access(engine, "dev")
    resolve = f"/{published_release.repo_id}/resolve/optimized/{WEIGHTS}"
    # One link through the API, one through the Hub redirect: the same budget of two.
    issued = client.post(
        "/api/links",
        json={"repo_id": published_release.repo_id, "tier": "optimized", "path": WEIGHTS},
        headers=dev.headers,
    )
    assert issued.status_code == 201, issued.text
    redirected = client.get(resolve, headers=dev.headers, follow_redirects=False)
    assert redirected.status_code == 302, redirected.text
    for _ in range(3):
        assert_problem(
            client.get(resolve, headers=dev.headers, follow_redirects=False), 429, "rate_limited"
        )
    limited = client.post(
        "/api/links",
        json={"repo_id": published_release.repo_id, "tier": "optimized", "path": WEIGHTS},
        headers=dev.headers,
    )
    assert_problem(limited, 429, "rate_limited")
    assert links_and_entries(engine) == (2, 2)  # no link and no log entry past the limit


def web_client(client: TestClient, engine: Engine, username: str) -> TestClient:
    set_password(engine, username)
    return sign_in(client, username)


def test_web_attestation_form_shares_the_api_limit(
    client: TestClient,
    engine: Engine,
    published_release: PublishedRelease,  # noqa: F811
    make_account: MakeAccount,
) -> None:
    dev = make_account("dev")
    repo_id, version = published_release.repo_id, published_release.version
    body = {"repo_id": repo_id, "version": version, "tier": "optimized", "attestation": "{}"}
    refused = client.post("/api/access/requests", json=body, headers=dev.headers)
    assert refused.status_code in (400, 422), refused.text  # not a valid attestation

    browser = web_client(client, engine, "dev")
    page = f"/access/request/{repo_id}/{version}/optimized"
    form = {"attestation": "{}", "csrf_token": csrf_of(browser.get(page).text)}
    first = browser.post(page, data=form, follow_redirects=False)
    assert first.status_code in (400, 422), first.text[:300]
    for _ in range(2):
        over = browser.post(page, data=form, follow_redirects=False)
        assert over.status_code == 429, over.text[:300]
        assert "too many requests" in over.text.lower()
    assert_problem(
        client.post("/api/access/requests", json=body, headers=dev.headers), 429, "rate_limited"
    )


def test_detection_page_and_api_share_one_limit(
    client: TestClient, engine: Engine, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    text = "Some pasted text to test for a watermark. " * 4
    api = client.post("/v1/watermark/detect", json={"text": text}, headers=dev.headers)
    assert api.status_code == 200, api.text

    browser = web_client(client, engine, "dev")
    form = {"text": text, "csrf_token": csrf_of(browser.get("/detect").text)}
    assert browser.post("/detect", data=form).status_code == 200
    over = browser.post("/detect", data=form)
    assert over.status_code == 429, over.text[:300]
    refused = client.post("/v1/watermark/detect", json={"text": text}, headers=dev.headers)
    assert refused.status_code == 429  # /v1 answers OpenAI's error shape
    assert refused.json()["error"]["code"] == "rate_limited"
