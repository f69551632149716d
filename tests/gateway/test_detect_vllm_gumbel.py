"""`POST /v1/watermark/detect` with scheme `vllm-gumbel`: vLLM-made text, the key never shown."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import LogEntry
from tests.conftest import Account
from tests.gateway.generation_fixtures import generation_release  # noqa: F401
from watermark.vllm_gumbel import GumbelConfig, GumbelKey, detect, prf_uniforms

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "watermark" / "vllm_gumbel_vectors.json").read_text()
)
MARKED = next(s for s in VECTORS["samples"] if s["watermarked"] and s["context_width"] == 4)
PLAIN = next(s for s in VECTORS["samples"] if not s["watermarked"])
SECRET = MARKED["key"]  # a 19-digit decimal: easy to spot if it leaks anywhere


def gumbel(key: str, **params: Any) -> dict[str, Any]:
    return {"scheme": "vllm-gumbel", "vllm_gumbel": {"key": key, **params}}


def post(client: TestClient, account: Account, **body: Any) -> Any:
    return client.post("/v1/watermark/detect", json=body, headers=account.headers)


def whole_word_text(tokenizer: Any, key: GumbelKey, length: int = 200) -> str:
    """Gumbel-max text over the tokenizer's whole-word tokens (which re-tokenize unchanged),
    sampled exactly as vLLM's watermarker does: argmax(logits - ln(-ln r)) with r from the
    PRF that the vLLM vectors pin bit for bit; repeated contexts sampled plainly."""
    words = [
        i
        for i in range(len(tokenizer))
        if (s := tokenizer.decode([i])).startswith(" ")
        and s[1:].isalpha()
        and tokenizer(s, add_special_tokens=False)["input_ids"] == [i]
    ]
    rng = np.random.default_rng(11)
    candidates = np.array(words, dtype=np.int64)
    out: list[int] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(length):
        context = tuple(([-1] * 4 + out)[-4:])
        logits = rng.normal(size=candidates.shape[0]) * 2.0
        if context in seen:
            out.append(int(rng.choice(candidates)))
            continue
        seen.add(context)
        r = prf_uniforms(np.tile(context, (candidates.shape[0], 1)), candidates, key)
        out.append(int(candidates[np.argmax(logits - np.log(-np.log(r.astype(np.float64))))]))
    text: str = tokenizer.decode(out)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == out
    return text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_vllm_watermarked_ids_are_detected_and_the_key_is_never_shown(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dev = make_account("dev")
    caplog.set_level(logging.DEBUG)
    found = post(client, dev, token_ids=MARKED["token_ids"], **gumbel(SECRET))
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["scheme"] == "vllm-gumbel"
    assert result["verdict"] == "watermarked"
    assert result["confidence"] == "high"
    assert result["p_value"] < 1e-10
    assert result["tokens_scored"] == MARKED["vllm_detection"]["num_scored_tokens"]
    assert result["score"] == pytest.approx(MARKED["vllm_detection"]["score"], rel=1e-12)
    assert result["attribution"] is None
    assert result["payload"] is None
    assert any("no payload" in note for note in result["notes"])
    assert len(result["spans"]) == len(MARKED["token_ids"])

    plain = post(client, dev, token_ids=PLAIN["token_ids"], **gumbel(PLAIN["key"])).json()
    assert not plain["watermarked"]
    wrong = post(client, dev, token_ids=MARKED["token_ids"], **gumbel(VECTORS["wrong_key"]))
    assert wrong.json()["verdict"] != "watermarked"
    assert wrong.json()["p_value"] > 1e-3

    # Logged like every detection (public parameters only); the key is nowhere.
    with Session(engine) as session:
        rows = session.exec(select(LogEntry).where(LogEntry.action == "detection.performed")).all()
    assert len(rows) == 3
    fields = json.loads(rows[0].entry)["fields"]
    assert fields["scheme"] == "vllm-gumbel"
    assert fields["parameters"] == [{**fields["parameters"][0], "context_width": 4}]
    assert fields["caller_key"] is True
    assert fields["verdict"] == "watermarked"
    for row in rows:
        assert SECRET not in row.entry
        assert VECTORS["wrong_key"] not in row.entry
    assert SECRET not in found.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_text_is_read_with_the_named_models_tokenizer(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    from transformers import AutoTokenizer

    from tests.gateway.generation_fixtures import build_generation_release

    dev = make_account("dev")
    key = GumbelKey(0x1234_5678_9ABC_DEF0)
    tokenizer = AutoTokenizer.from_pretrained(str(build_generation_release().out_dir / "open"))
    text = whole_word_text(tokenizer, key)
    body = gumbel(hex(key.value))
    found = post(client, dev, text=text, model="acme/chatty:open", **body)
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["watermarked"]
    assert result["model"] == "acme/chatty:open"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert result["p_value"] == pytest.approx(detect(ids, GumbelConfig(), key).p_value)
    spans = result["spans"]
    assert "".join(text[s["start"] : s["end"]] for s in spans) == text
    # A passage of other text: still detected, with fewer tokens carrying the signal.
    prefixed = "The release gateway is open." + text
    mixed = post(client, dev, text=prefixed, model="acme/chatty", **body)
    assert mixed.json()["watermarked"]
    # Text without a model has no tokenizer to read it with.
    nomodel = post(client, dev, text=text, **body)
    assert nomodel.status_code == 422
    assert post(client, dev, text=text, model="acme/unknown", **body).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "body",
    [
        {"vllm_gumbel": {"key": SECRET}},  # parameters for the other scheme
        gumbel(SECRET + "x"),  # not a number: said without repeating it
        gumbel("18446744073709551616"),  # 2**64
        gumbel(SECRET * 2),  # too long for any 64-bit key
        gumbel(SECRET, context_width=0),
        gumbel(SECRET, algorithm="dual_key_gumbel"),
        {"scheme": "kgw", "vllm_gumbel": {"key": SECRET}},
    ],
)
def test_bad_vllm_gumbel_requests_are_422_without_echoing_the_key(
    client: TestClient, published: Account, make_account: Callable[..., Account], body: Any
) -> None:
    dev = make_account("dev")
    refused = post(client, dev, token_ids=MARKED["token_ids"], **body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "validation_error"
    assert SECRET not in refused.text
