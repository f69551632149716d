"""The detector page: highlighting segments, signed-in use, and rendering a service result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.schemas.openai import DetectResponse, TokenSpan
from gateway.services import detection
from gateway.web.detect import Segment, segments
from tests.conftest import Account
from tests.web.conftest import csrf_of, sign_in
from tests.web.explain_fixtures import attributed


def span(start: int, end: int, kind: str) -> TokenSpan:
    return TokenSpan(start=start, end=end, token_index=0, kind=kind)  # type: ignore[arg-type]


def test_segments_cover_the_whole_text() -> None:
    text = "ab cd ef"
    out = segments(text, [span(0, 2, "green"), span(2, 5, "red"), span(6, 8, "skip")])
    assert "".join(s.text for s in out) == text
    assert out == [
        Segment("ab", "green", 0),
        Segment(" cd", "red", 0),
        Segment(" ", "plain"),
        Segment("ef", "skip", 0),
    ]
    assert segments("xyz", []) == [Segment("xyz", "plain")]


def _result() -> DetectResponse:
    return attributed(
        4,
        call_id="cmpl-123",
        spans=[span(0, 5, "green"), span(5, 11, "red"), span(11, 16, "green")],
        tokens_scored=3,
        green_fraction=0.67,
    )


def test_detect_needs_sign_in_and_renders_the_result(
    client: TestClient, web_account: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake(
        session: Any, principal: Any, *, text: str, model: str | None, now: Any, **more: Any
    ) -> Any:
        seen.update(text=text, model=model, user=principal.username)
        return _result()

    monkeypatch.setattr(detection, "detect_text", fake)
    token = csrf_of(client.get("/detect").text)
    anonymous = client.post(
        "/detect", data={"text": "x", "csrf_token": token}, follow_redirects=False
    )
    assert anonymous.status_code == 303
    web_account("dev")
    sign_in(client, "dev")
    page = client.post(
        "/detect",
        data={"text": "<b>hi</b> there you", "csrf_token": csrf_of(client.get("/detect").text)},
    )
    assert page.status_code == 200
    assert seen == {"text": "<b>hi</b> there you", "model": None, "user": "dev"}
    html = page.text
    assert 'title="token 0: green-list token (raises the z-score)">&lt;b&gt;hi</span>' in html
    assert "<b>hi</b>" not in html
    assert "cmpl-123" in html
    assert 'href="/transparency/receipts/4"' in html


def test_detection_errors_are_shown_on_the_page(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("dev")
    sign_in(client, "dev")
    page = client.post(
        "/detect",
        data={
            "text": "some text",
            "model": "nobody/nothing",
            "csrf_token": csrf_of(client.get("/detect").text),
        },
    )
    assert page.status_code == 404
    assert 'role="alert"' in page.text


def test_the_page_says_how_text_was_tokenized_and_when_it_looks_foreign(
    client: TestClient, web_account: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.schemas.openai import TokenizationReport, TokenizationTrust

    result = _result().model_copy(
        update={
            "verdict": "inconclusive",
            "confidence": "low",
            "tokenization": TokenizationReport(
                input="text",
                scored_with="unnormalized",
                candidates=["plain", "unnormalized"],
                corrected_for_candidates=2,
                trust=TokenizationTrust(
                    trusted=False,
                    text_roundtrip=False,
                    ids_roundtrip=True,
                    unknown_rate=0.0,
                    byte_fallback_rate=0.0,
                    candidates_disagree=True,
                    replacement_chars=0,
                    reasons=["the tokenizer does not decode its own encoding of this text"],
                ),
            ),
        }
    )
    monkeypatch.setattr(detection, "detect_text", lambda *a, **k: result)
    web_account("dev")
    sign_in(client, "dev")
    page = client.post(
        "/detect", data={"text": "SHOUTY TEXT", "csrf_token": csrf_of(client.get("/detect").text)}
    )
    assert page.status_code == 200
    html = page.text
    assert "scored as <code>unnormalized</code>, best of 2 readings" in html
    assert "corrected for all of them" in html
    assert "looks foreign" in html
    assert "does not decode its own encoding" in html
    assert "low confidence" in html
