"""Issue 18: detection that does not fail on tokenization, through the app.

A tiny model whose tokenizer does not round-trip what it samples (a lowercasing normalizer on
a cased vocabulary, the model trained on capitals): its releases record the round trip in the
signed statement; without the publisher's override the gateway refuses to generate with it;
with it, text from the model is detected and attributed (the old detector called it "not
watermarked, confidence high"), and the p-value is corrected for the tokenizations tried.
Generation is seeded and the tests' watermark key fixed: every p-value is a fixed outcome.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish

REPO_ID = "acme/shouty"


@functools.cache
def _model() -> Path:
    from release.testing import build_lowercasing_model

    root = Path(tempfile.mkdtemp(prefix="tiergate-lowercasing-"))
    return build_lowercasing_model(root / "model", train_steps=40)


@functools.cache
def build(version: str, override: bool) -> BuiltRelease:
    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release

    out = Path(tempfile.mkdtemp(prefix="tiergate-lowercasing-")) / "out"
    key = PrivateKey.generate()
    build_release(
        _model(),
        out,
        key=key,
        options=BuildOptions(
            repo_id=REPO_ID,
            version=version,
            license="apache-2.0",
            approval=ApprovalPolicy(),
            allow_unreliable_text_detection=override,
        ),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    return BuiltRelease(out, key.public_key.to_pem(), REPO_ID, version)


def statement_tokenization(built: BuiltRelease) -> dict[str, str]:
    from licensing.dsse import Envelope
    from licensing.statements import parse_release_statement

    envelope = Envelope.from_json((built.out_dir / "release.dsse.json").read_bytes())
    tokenization: dict[str, str] = dict(parse_release_statement(envelope.payload).tokenization)
    return tokenization


def generate(client: TestClient, account: Account, model: str, tokens: int) -> Any:
    return client.post(
        "/v1/completions",
        json={"model": model, "prompt": "THE ", "max_tokens": tokens, "seed": 18},
        headers=account.headers,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unreliable_tokenizer_is_refused_unless_overridden(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    refused, allowed = build("1.0.0", False), build("2.0.0", True)
    record = statement_tokenization(refused)
    assert record["text_detection"] == "unreliable"
    assert float(record["sample_token_rate"]) < 0.5  # capitals re-encode as other ids
    assert float(record["corpus_token_rate"]) == 1.0  # its own encodings round-trip
    assert statement_tokenization(allowed)["text_detection"] == "override"
    card = (refused.out_dir / "open" / "README.md").read_text("utf-8")
    assert "### Tokenizer round trip" in card
    assert "Detection from text is unreliable" in card

    publisher = make_account("pat", "publisher", org="acme")
    publish(refused, client, publisher)  # type: ignore[arg-type]
    publish(allowed, client, publisher)  # type: ignore[arg-type]
    dev = make_account("dev")
    answer = generate(client, dev, f"{REPO_ID}@1.0.0", 8)
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "text_detection_unreliable"
    assert "--allow-unreliable-text-detection" in error["message"]
    assert generate(client, dev, f"{REPO_ID}@2.0.0", 8).status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_regression_text_of_a_non_round_tripping_tokenizer_is_detected(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    """The report: text said "not watermarked, confidence high" while its ids gave p ~ 5e-50."""
    built = build("2.0.0", True)
    publisher = make_account("pat", "publisher", org="acme")
    publish(built, client, publisher)  # type: ignore[arg-type]
    dev = make_account("dev")
    made = generate(client, dev, f"{REPO_ID}@2.0.0", 300)
    assert made.status_code == 200, made.text
    body = made.json()
    text = body["choices"][0]["text"]
    assert sum(c.isupper() for c in text) > len(text) // 2  # the model writes capitals

    # What the old detector scored: the tokenizer's plain encoding. It misses the watermark.
    from transformers import AutoTokenizer

    from release.testing import LOWERCASING_VOCAB

    tokenizer = AutoTokenizer.from_pretrained(str(built.out_dir / "open"))
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    sampled = [LOWERCASING_VOCAB[c] for c in text]  # one token per character
    assert plain != sampled
    by_plain = client.post(
        "/v1/watermark/detect", json={"token_ids": plain}, headers=dev.headers
    ).json()
    assert not by_plain["watermarked"]
    assert by_plain["p_value"] > 1e-3
    by_ids = client.post(
        "/v1/watermark/detect", json={"token_ids": sampled}, headers=dev.headers
    ).json()
    assert by_ids["watermarked"]
    assert by_ids["log10_p_value"] < -10

    found = client.post("/v1/watermark/detect", json={"text": text}, headers=dev.headers)
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["verdict"] == "watermarked"
    assert result["watermarked"]
    assert result["attribution"]["call_id"] == body["id"]
    report = result["tokenization"]
    assert report["input"] == "text"
    assert report["scored_with"] == "unnormalized"
    assert report["candidates"][0] == "plain"
    k = report["corrected_for_candidates"]
    assert k == len(report["candidates"]) >= 2
    assert result["tests_corrected_for"] == k * by_ids["tests_corrected_for"]
    assert report["trust"]["trusted"] is False
    assert report["matches_logged_output"] is True
    assert report["published"] == [
        {
            "model": f"{REPO_ID}@2.0.0:open",
            "text_detection": "override",
            "roundtrip_rate": pytest.approx(float(statement_tokenization(built)["roundtrip_rate"])),
        }
    ]
    assert any("Bonferroni" in note for note in result["notes"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_miss_on_foreign_text_is_never_high_confidence(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    built = build("2.0.0", True)
    publisher = make_account("pat", "publisher", org="acme")
    publish(built, client, publisher)  # type: ignore[arg-type]
    dev = make_account("dev")
    assert generate(client, dev, f"{REPO_ID}@2.0.0", 8).status_code == 200  # its key exists
    human = (
        "DEAR COMMITTEE, THANK YOU FOR THE THOUGHTFUL REVIEW OF OUR PROPOSAL LAST WEEK. WE "
        "HAVE REVISED THE BUDGET SECTION, CLARIFIED THE TIMELINE FOR THE SECOND PHASE, AND "
        "ADDED THE LETTERS OF SUPPORT YOU ASKED FOR. PLEASE LET ME KNOW IF ANYTHING IS MISSING."
    )
    result = client.post("/v1/watermark/detect", json={"text": human}, headers=dev.headers).json()
    assert result["keys_tried"] == 1, result
    assert not result["watermarked"]
    # On these statistics the old rule alone answers "not watermarked" with confidence.
    from gateway.services.detection import confidence_of

    old = confidence_of(False, result["p_value"], result["tokens_scored"], 1e-6)
    assert old[0] == "not_watermarked"
    assert old[1] in ("high", "medium")
    assert result["verdict"] == "inconclusive"
    assert result["confidence"] == "low"
    assert any("cannot be trusted" in note for note in result["notes"]), result["notes"]
    reasons = result["tokenization"]["trust"]["reasons"]
    assert any("does not decode its own encoding" in r for r in reasons), json.dumps(reasons)
