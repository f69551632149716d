"""Sign in / out, session cookies, CSRF and passwords."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.auth.passwords import ScryptParams, hash_password, verify_password
from tests.conftest import Account, _truncate_all
from tests.web.conftest import PASSWORD, csrf_of, sign_in


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Sessions are the web layer's own SQL: run these on both databases."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "tiergate.db")
        return f"sqlite:///{tmp_path / 'tiergate.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    _truncate_all(url)
    return url


def test_password_hash_roundtrip_and_format() -> None:
    params = ScryptParams(n=1 << 10, r=8, p=1)
    stored = hash_password("a long enough secret", params)
    assert stored.startswith("scrypt$n=1024,r=8,p=1$")
    assert verify_password("a long enough secret", stored)
    assert not verify_password("a long enough secreT", stored)
    # Same password, fresh salt: different hashes.
    assert stored != hash_password("a long enough secret", params)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "bcrypt$x$y$z",
        "scrypt$n=3,r=8,p=1$AAAA$AAAA",
        "scrypt$n=1073741824,r=8,p=1$AA$AA",
        "scrypt$garbage",
        "scrypt$n=1024,r=8,p=1$!!!$???",
    ],
)
def test_malformed_hashes_say_no(stored: str | None) -> None:
    assert verify_password("whatever password", stored) is False


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_it(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("dora")
    page = client.get("/login")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    response = client.post(
        "/login",
        data={
            "username": "dora",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "/account",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    cookie = next(
        v
        for k, v in response.headers.multi_items()
        if k == "set-cookie" and v.startswith("tiergate_session=")
    )
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # plain http here; Secure when served over TLS
    account = client.get("/account")
    assert account.status_code == 200
    assert "dora" in account.text
    client.post("/logout", data={"csrf_token": csrf_of(account.text)}, follow_redirects=False)
    after = client.get("/account", follow_redirects=False)
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login?next=")


def test_wrong_password_and_unknown_user_look_the_same(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("erin")
    bodies = []
    for username, password in (("erin", "wrong password!"), ("nobody", "wrong password!")):
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        assert response.status_code == 401
        bodies.append("Unknown username or wrong password." in response.text)
    assert bodies == [True, True]


def test_account_without_password_cannot_sign_in(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    make_account("frank")
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "frank", "password": "", "csrf_token": token}
    )
    assert response.status_code in (401, 422)


def test_forms_without_a_valid_csrf_token_are_refused(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("gina")
    client.get("/login")
    missing = client.post("/login", data={"username": "gina", "password": PASSWORD})
    assert missing.status_code == 403
    assert "did not come from this site" in missing.text
    forged = client.post(
        "/login", data={"username": "gina", "password": PASSWORD, "csrf_token": "0" * 64}
    )
    assert forged.status_code == 403
    sign_in(client, "gina")
    page = client.get("/account")
    token = csrf_of(page.text)
    cross = client.post(
        "/account/tokens",
        data={"name": "x", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    # The anonymous token stops working once signed in: it is bound to the session's secret.
    stale = client.post("/account/tokens", data={"name": "x", "csrf_token": "f" * 64})
    assert stale.status_code == 403


def test_next_parameter_cannot_redirect_off_site(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("hank")
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={
            "username": "hank",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_sessions_live_in_the_database(
    client: TestClient, web_account: Callable[..., Account], app: object, engine: Engine
) -> None:
    """A second app (another gateway process) on the same database accepts the cookie."""
    from gateway.app import create_app

    web_account("ivy")
    sign_in(client, "ivy")
    other = create_app(app.state.gateway.settings, engine=engine)  # type: ignore[attr-defined]
    with TestClient(other) as second:
        second.cookies.update(client.cookies)
        assert "ivy" in second.get("/account").text


def test_every_form_carries_its_csrf_token(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    """Regression: macros imported without context rendered an empty token in some forms."""
    import re

    web_account("jo", "publisher", "acme")
    sign_in(client, "jo")
    for page in ("/account", "/review", "/detect", "/access"):
        html = client.get(page).text
        forms = re.findall(r'<form method="post".*?</form>', html, flags=re.S)
        assert forms, page
        for form in forms:
            assert re.search(r'name="csrf_token" value="[0-9a-f]{64}"', form), (page, form[:200])


def test_password_guessing_is_rate_limited(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("kim")
    token = csrf_of(client.get("/login").text)
    codes = [
        client.post(
            "/login", data={"username": "kim", "password": f"guess number {i}", "csrf_token": token}
        ).status_code
        for i in range(11)
    ]
    assert codes == [401] * 10 + [429]
    # Even the right password waits for the window to pass.
    right = client.post(
        "/login", data={"username": "kim", "password": PASSWORD, "csrf_token": token}
    )
    assert right.status_code == 429
    assert "Too many requests" in right.text
