"""Issue #14 item 7: one rule for gated tiers, downloads and generation alike.

Members of the publishing org use its gated tiers without a grant; everyone else needs a live
grant. It used to differ: a member downloaded the gated weights but was refused generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import Account
from tests.gateway.download_fixtures import grant_access
from tests.gateway.generation_fixtures import (  # noqa: F401
    MODEL,
    REPO_ID,
    VERSION,
    generation_release,
)

GATED = f"{MODEL}:optimized"
WEIGHTS = "/acme/chatty/resolve/optimized/model.safetensors"


def complete(client: TestClient, account: Account, model: str) -> Any:
    payload = {"model": model, "prompt": "The gateway", "max_tokens": 2}
    return client.post("/v1/completions", json=payload, headers=account.headers)


def download(client: TestClient, account: Account) -> Any:
    return client.get(WEIGHTS, headers=account.headers, follow_redirects=False)


def test_org_member_downloads_and_generates_with_the_gated_tier_without_a_grant(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    member = make_account("ida", "developer", org="acme")
    assert download(client, member).status_code == 302
    served = complete(client, member, GATED)
    assert served.status_code == 200, served.text
    listed = client.get("/v1/models", headers=member.headers).json()
    assert GATED in {m["id"] for m in listed["data"]}


def test_outsider_needs_a_grant_for_both_and_the_cached_model_keeps_the_rule(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    member = make_account("ida", "developer", org="acme")
    outsider = make_account("dev")
    other_org = make_account("olga", "publisher", org="other")
    for account in (outsider, other_org):
        assert download(client, account).json()["code"] == "grant_required"
        assert complete(client, account, GATED).json()["error"]["code"] == "grant_required"

    # The member's call caches the resolved model; an outsider is still checked against it.
    assert complete(client, member, GATED).status_code == 200
    assert complete(client, outsider, GATED).json()["error"]["code"] == "grant_required"
    grant_access(engine, "dev", "acme/chatty", "1.0.0")
    assert download(client, outsider).status_code == 302
    assert complete(client, outsider, GATED).status_code == 200
    # And a model cached by a grantee's call is usable by a member without a grant.
    assert complete(client, member, GATED).status_code == 200


def test_one_grant_opens_every_optimized_artifact_of_the_release(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    """Issue #16: a release's further artifacts (`optimized_<name>`) are the same weights in
    other formats; the grant on `optimized` opens them, and nothing else does."""
    from sqlmodel import Session, select

    from gateway.db.models import Release
    from gateway.db.timeutil import utcnow
    from gateway.services.accounts import authenticate
    from gateway.services.downloads import gated_use
    from gateway.services.grants import grant_tier_of
    from release.formats import grant_tier

    assert grant_tier("optimized_gguf_q4_0") == "optimized"
    assert grant_tier("optimized") == "optimized"
    assert grant_tier("open") == "open"
    dev = make_account("dev")
    stranger = make_account("stranger")
    grant_access(engine, "dev", REPO_ID, VERSION)
    with Session(engine) as session:
        release = session.exec(select(Release).where(Release.repo_id == REPO_ID)).one()
        now = utcnow()
        holder = authenticate(session, dev.token, now=now)
        other = authenticate(session, stranger.token, now=now)
        assert grant_tier_of(release, "optimized_gguf_q4_0") == "optimized"
        for tier in ("optimized", "optimized_gguf_q4_0", "optimized_int4"):
            assert gated_use(session, holder, release, tier, now).allowed, tier
            assert not gated_use(session, other, release, tier, now).allowed, tier
        # Not a prefix match on anything: a tier merely starting with "optimized" is its own.
        assert not gated_use(session, holder, release, "optimizedx", now).allowed
