"""A publisher registers its vLLM watermark key with the CLI; anyone then detects vLLM's text.

The journey: `tiergate watermark register-vllm-key` against a live gateway (publishers of the
releasing org only, logged without the key), then a developer posts vLLM-made token ids, and
text read with the model's tokenizer, to `POST /v1/watermark/detect` with scheme `vllm-gumbel`
and no key: the registered key is found and the model named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.cli.main import cli
from gateway.db.models import LogEntry, Release, ReleaseStatus, VllmWatermarkKeyRecord
from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401
from tests.gateway.test_detect_vllm_gumbel import MARKED, PLAIN, whole_word_text
from watermark.vllm_gumbel import GumbelKey

pytestmark = pytest.mark.e2e


def _register(server: LiveServer, account: Account, key_file: Path, *extra: str) -> Any:
    return CliRunner().invoke(
        cli,
        ["watermark", "register-vllm-key", f"{MODEL}:open", "--key-file", str(key_file),
         "--json", *extra],
        env={"TIERGATE_GATEWAY": server.url, "TIERGATE_TOKEN": account.token},
    )  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_registered_vllm_key_detects_without_the_checker_holding_it(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
    tmp_path: Path,
) -> None:
    from transformers import AutoTokenizer

    publisher = make_account("pat", "publisher", org="acme")
    dev = make_account("dev")
    rival = make_account("rival", "publisher", org="beta")
    key_file = tmp_path / "vllm.key"
    key_file.write_text(MARKED["key"] + "\n")
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(generation_release, http, publisher)

        def detect(**body: Any) -> Any:
            answer = http.post(
                "/v1/watermark/detect",
                json={"scheme": "vllm-gumbel", **body},
                headers=dev.headers,
            )
            assert answer.status_code == 200, answer.text
            assert MARKED["key"] not in answer.text
            return answer.json()

        before = detect(token_ids=MARKED["token_ids"])
        assert not before["watermarked"]
        assert before["keys_tried"] == 0
        assert any("registered" in note for note in before["notes"])

        for stranger in (dev, rival):
            refused = _register(live_server, stranger, key_file)
            assert refused.exit_code != 0
            assert "HTTP 403" in str(refused.output) + str(refused.exception or "")
        done = _register(live_server, publisher, key_file)
        assert done.exit_code == 0, done.output
        registered = json.loads(done.output)
        assert registered["model"] == f"{MODEL}:open"
        assert MARKED["key"] not in done.output
        # A second key for the tier (say, after rotation): both are tried and corrected for.
        other = tmp_path / "other.key"
        text_key = GumbelKey(0x1234_5678_9ABC_DEF0)
        other.write_text(hex(text_key.value))
        assert _register(live_server, publisher, other).exit_code == 0

        found = detect(token_ids=MARKED["token_ids"], model="acme/chatty")
        assert found["watermarked"]
        assert found["p_value"] < 1e-10
        assert found["model"] == f"{MODEL}:open"
        assert found["keys_tried"] == found["tests_corrected_for"] == 2
        assert found["raw_p_value"] < found["p_value"]  # the correction is applied
        anywhere = detect(token_ids=MARKED["token_ids"])  # no model: every registered key
        assert anywhere["watermarked"]
        assert not detect(token_ids=PLAIN["token_ids"])["watermarked"]

        tokenizer = AutoTokenizer.from_pretrained(str(generation_release.out_dir / "open"))
        text = whole_word_text(tokenizer, text_key)
        by_text = detect(text=text)
        assert by_text["watermarked"]
        assert by_text["model"] == f"{MODEL}:open"

        # A release nobody else may see (pending) is never tried, nor named, for others.
        with Session(engine) as session:
            release = session.exec(select(Release)).one()
            release.status = ReleaseStatus.pending.value
            session.add(release)
            session.commit()
        hidden = detect(token_ids=MARKED["token_ids"])
        assert (hidden["watermarked"], hidden["keys_tried"], hidden["model"]) == (False, 0, None)
        own = http.post(
            "/v1/watermark/detect",
            json={"scheme": "vllm-gumbel", "token_ids": MARKED["token_ids"]},
            headers=publisher.headers,
        ).json()
        assert own["watermarked"]

    with Session(engine) as session:
        rows = session.exec(
            select(LogEntry).where(LogEntry.action == "watermark.vllm_key_registered")
        ).all()
        stored = session.exec(select(VllmWatermarkKeyRecord)).all()
        entries = session.exec(select(LogEntry)).all()
    assert len(rows) == 2
    assert json.loads(rows[0].entry)["actor"]["name"] == "pat"
    assert all(MARKED["key"] not in e.entry and str(text_key.value) not in e.entry for e in entries)
    assert len(stored) == 2
    assert all(MARKED["key"] not in r.sealed for r in stored)  # sealed, not plain


def test_key_file_errors_stop_before_anything_is_sent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    result = CliRunner().invoke(
        cli,
        ["watermark", "register-vllm-key", "acme/x", "--key-file", str(bad)],
        env={"TIERGATE_GATEWAY": "http://127.0.0.1:9", "TIERGATE_TOKEN": "t"},
    )
    assert result.exit_code != 0
    assert "watermark key" in str(result.exception or result.output)
