"""`POST /v1/watermark/detect` through the app: verdicts, attribution, visibility, logging."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import LogEntry, User
from gateway.db.timeutil import utcnow
from gateway.services import ratelimit
from licensing.tlog.merkle import leaf_hash
from tests.conftest import Account
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

HUMAN = (
    "Dear committee, thank you for the thoughtful review of our proposal last week. We have "
    "revised the budget section, clarified the timeline for the second phase, and added the "
    "letters of support you asked for. Please let me know if anything else is missing."
)


def generate(client: TestClient, account: Account, tokens: int = 120) -> dict[str, Any]:
    response = client.post(
        "/v1/completions",
        # Seeded (and the tests' watermark key is fixed), so the p-values are fixed outcomes.
        json={
            "model": MODEL,
            "prompt": "The release gateway",
            "max_tokens": tokens,
            "seed": tokens,
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def detect(client: TestClient, account: Account, **body: Any) -> Any:
    return client.post("/v1/watermark/detect", json=body, headers=account.headers)


def test_generated_text_is_detected_and_attributed_with_a_proof(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev, other = make_account("dev"), make_account("other")
    generate(client, dev, tokens=8)  # a second logged call with the same key
    made = generate(client, dev)
    text = made["choices"][0]["text"]

    found = detect(client, dev, text=text)
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["verdict"] == "watermarked"
    assert result["watermarked"]
    assert result["p_value"] < 1e-6
    assert result["model"] == f"{MODEL}:open"
    assert result["watermark_key_id"] == made["tiergate"]["watermark_key_id"]
    assert result["keys_tried"] == 1
    # Two calls issued with the key: three payload hypotheses (two tags, none) per reading of
    # the text (a generated text with a line break or an odd space also gets a pasted reading).
    readings = result["tokenization"]["corrected_for_candidates"]
    assert readings == len(result["tokenization"]["candidates"]) >= 1
    assert result["tests_corrected_for"] == 3 * readings
    call = result["attribution"]
    assert call["call_id"] == made["id"]
    assert call["log_index"] == made["tiergate"]["log_index"]
    assert call["payload"] == made["tiergate"]["payload"]
    assert call["requester"] == "dev"
    proof = call["inclusion_proof"]
    assert proof is not None
    assert proof["index"] == call["log_index"]
    with Session(engine) as session:
        row = session.get(LogEntry, call["log_index"])
        assert row is not None
        assert leaf_hash(row.entry.encode()).hex() == proof["leaf_hash"]
    spans = result["spans"]
    assert {s["kind"] for s in spans} <= {"green", "red", "skip"}
    # Character spans tile the text (a character split over byte tokens repeats its span).
    pairs = [(s["start"], s["end"]) for s in spans]
    tiles = [p for i, p in enumerate(pairs) if i == 0 or p != pairs[i - 1]]
    assert "".join(text[a:b] for a, b in tiles) == text
    assert sum(s["kind"] == "green" for s in spans) > sum(s["kind"] == "red" for s in spans)

    # Another account sees the verdict and the call, not who made it.
    seen = detect(client, other, text=text).json()
    assert seen["attribution"]["call_id"] == made["id"]
    assert seen["attribution"]["requester"] is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_token_ids_human_text_and_mixed_text(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    made = generate(client, dev, tokens=100)
    text = made["choices"][0]["text"]
    human = detect(client, dev, text=HUMAN).json()
    assert human["verdict"] in ("not_watermarked", "inconclusive")
    assert not human["watermarked"]
    assert human["attribution"] is None
    mixed = detect(client, dev, text=HUMAN + " " + text + " " + HUMAN).json()
    assert mixed["watermarked"], mixed["p_value"]
    assert mixed["attribution"]["call_id"] == made["id"]
    assert mixed["window"] is not None

    # Token ids skip the tokenizer; a filter to another model finds no key to try.
    from transformers import AutoTokenizer

    from tests.gateway.generation_fixtures import build_generation_release

    tokenizer = AutoTokenizer.from_pretrained(str(build_generation_release().out_dir / "open"))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    by_ids = detect(client, dev, token_ids=ids, model="acme/chatty:open").json()
    assert by_ids["watermarked"]
    assert by_ids["spans"][0]["start"] is None
    assert detect(client, dev, text=text, model="acme/unknown").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_detection_is_logged_with_a_digest_only(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    assert detect(client, dev, text=HUMAN).status_code == 200
    with Session(engine) as session:
        rows = session.exec(select(LogEntry).where(LogEntry.action == "detection.performed")).all()
    assert len(rows) == 1
    logged = json.loads(rows[0].entry)
    assert logged["fields"]["input_sha256"].startswith("sha256:")
    assert "committee" not in rows[0].entry
    assert logged["actor"]["name"] == "dev"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_detect_requires_auth_valid_input_and_is_rate_limited(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    assert client.post("/v1/watermark/detect", json={"text": HUMAN}).status_code == 401
    both = detect(client, dev, text=HUMAN, token_ids=[1, 2])
    assert (both.status_code, both.json()["error"]["code"]) == (422, "validation_error")
    assert detect(client, dev).status_code == 422
    assert detect(client, dev, text="x" * 300_000).status_code in (413, 422)
    busy = make_account("busy")
    limit = client.app.state.gateway.settings.rate_limit_detections_per_account  # type: ignore[attr-defined]
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "busy")).one()
    # Fill the account's bucket in the database (as other replicas would), then one more
    # detection is refused.
    bucket = ratelimit.bucket_key("detect-user", str(user.id))
    for _ in range(limit):
        ratelimit.hit(engine, [ratelimit.Limit(bucket, limit, 60)], now=utcnow())
    refused = detect(client, busy, text=HUMAN)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
