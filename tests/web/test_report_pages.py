"""The report form on a model's page and the reports page: the service's verification shown
("genuine output of ..., logged call N" with the log entry, or "not verified: why"), CSRF,
typed errors on the page, and visibility (reporter and publisher only until disclosed)."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.gateway.generation_fixtures import MODEL, generation_release, published  # noqa: F401
from tests.gateway.test_reports import generate, settings  # noqa: F401
from tests.web.conftest import csrf_of, sign_in

PAGE = "/models/acme/chatty/reports"


def submit(client: TestClient, page: str, **fields: str) -> object:
    fields.setdefault("category", "bias")
    fields.setdefault("description", "It stereotypes <script>alert(1)</script> a group.")
    return client.post(PAGE, data={"csrf_token": csrf_of(client.get(page).text), **fields})


def test_the_form_verifies_a_quote_and_the_list_respects_visibility(
    client: TestClient,
    published: Account,  # noqa: F811
    web_account: Callable[..., Account],
    browser_client: Callable[[], TestClient],
) -> None:
    anonymous = client.get(PAGE)
    assert anonymous.status_code == 200
    assert "Sign in</a> to file a report" in anonymous.text
    assert "No reports you can see" in anonymous.text

    dev = web_account("dev")
    made = generate(client, dev)
    quote, index = made["choices"][0]["text"], made["tiergate"]["log_index"]
    sign_in(client, "dev")
    model_page = client.get("/models/acme/chatty")
    assert f'action="{PAGE}"' in model_page.text
    assert '<input type="hidden" name="version" value="1.0.0">' in model_page.text

    genuine = submit(client, "/models/acme/chatty", quoted_output=quote, version="1.0.0")
    assert genuine.status_code == 201, genuine.text  # type: ignore[attr-defined]
    html = genuine.text  # type: ignore[attr-defined]
    assert f"genuine output of {MODEL}, logged call {index}" in html
    assert f'href="/transparency/entries/{index}"' in html
    assert "inclusion proof against a checkpoint" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    fake = submit(client, PAGE, quoted_output="Nothing the model ever said, I promise you all.")
    assert fake.status_code == 201  # type: ignore[attr-defined]
    assert "not verified: the text is not a logged output" in fake.text  # type: ignore[attr-defined]

    listed = client.get(PAGE).text
    assert re.findall(r'id="report-(\d+)"', listed) == ["2", "1"]  # newest first
    assert "by dev" in listed

    other = browser_client()
    web_account("eve")
    sign_in(other, "eve")
    assert 'id="report-' not in other.get(PAGE).text
    web_account("pub", "publisher", "acme")
    publisher = browser_client()
    sign_in(publisher, "pub")
    assert re.findall(r'id="report-(\d+)"', publisher.get(PAGE).text) == ["2", "1"]


def test_form_errors_csrf_and_sign_in(
    client: TestClient,
    published: Account,  # noqa: F811
    web_account: Callable[..., Account],
) -> None:
    token = csrf_of(client.get("/login").text)  # an anonymous form token
    form = {"category": "bias", "description": "x", "csrf_token": token}
    anonymous = client.post(PAGE, data=form, follow_redirects=False)
    assert anonymous.status_code == 303
    web_account("dev")
    sign_in(client, "dev")
    forged = client.post(PAGE, data={**form, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    bad = submit(client, PAGE, category="gossip", description="kept text")
    assert bad.status_code == 422  # type: ignore[attr-defined]
    assert "category must be one of" in bad.text  # type: ignore[attr-defined]
    assert ">kept text</textarea>" in bad.text  # type: ignore[attr-defined]
    missing = submit(client, PAGE, version="9.9.9")
    assert missing.status_code == 404  # type: ignore[attr-defined]
    assert client.get("/models/acme/nothing/reports").status_code == 404
