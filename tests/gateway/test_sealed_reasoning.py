"""Reasoning traces sealed to the publisher's auditor key (HPKE): sealed as the call is logged,
disclosed only with a log event, opened offline and checked against the logged digest."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.cli.auditor import group
from gateway.db.models import SealedReasoning
from gateway.generation.reasoning import sha256_of
from gateway.generation.sealing import (
    SealedTraceInvalid,
    generate_auditor_key,
    open_trace,
    public_key_of,
    seal_trace,
)
from gateway.ledger.events import digest_of
from tests.conftest import Account
from tests.gateway.generation_calls import entry
from tests.gateway.generation_fixtures import generation_release  # noqa: F401
from tests.gateway.reasoning_calls import TEXT, TRACE, chat, fixed_output
from tests.gateway.test_reports import entries


def test_a_sealed_trace_opens_only_with_its_key_for_its_call_and_choice() -> None:
    private, public = generate_auditor_key()
    assert public_key_of(private) == public
    sealed = seal_trace(TRACE, public, call_id="chatcmpl-1", choice=0)
    assert TRACE.encode() not in sealed
    assert open_trace(sealed, private, call_id="chatcmpl-1", choice=0) == TRACE
    wrong_key, _ = generate_auditor_key()
    flipped = bytes([sealed[0]]) + bytes([sealed[1] ^ 1]) + sealed[2:]
    tampered_tail = sealed[:-1] + bytes([sealed[-1] ^ 0x80])
    for data, key, call_id, choice in [
        (sealed, wrong_key, "chatcmpl-1", 0),  # a wrong key
        (tampered_tail, private, "chatcmpl-1", 0),  # a changed ciphertext (the tag)
        (flipped, private, "chatcmpl-1", 0),  # a changed encapsulated key
        (sealed[:20], private, "chatcmpl-1", 0),  # truncated
        (sealed, private, "chatcmpl-2", 0),  # moved to another call
        (sealed, private, "chatcmpl-1", 1),  # moved to another choice
        (sealed, b"short", "chatcmpl-1", 0),  # not a key
    ]:
        with pytest.raises(SealedTraceInvalid):
            open_trace(data, key, call_id=call_id, choice=choice)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_auditor_opens_a_disclosed_trace_offline_and_proves_it_was_logged(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    key_file = tmp_path / "auditor.key"
    made = runner.invoke(group, ["keygen", "--out", str(key_file)], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    public = made.output.split("public key: ")[1].split()[0]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(group, ["keygen", "--out", str(key_file)])
    assert again.exit_code == 2  # never overwrites a key

    bad = client.put("/api/orgs/acme/policy", json={"auditor_key": "00" * 31}, **_h(published))
    assert bad.status_code == 422
    assert bad.json()["code"] == "auditor_key_invalid"
    set_ = client.put("/api/orgs/acme/policy", json={"auditor_key": public}, **_h(published))
    assert set_.status_code == 200, set_.text
    key_id = set_.json()["auditor_key_id"]

    fixed_output(monkeypatch, TEXT)
    dev = make_account("dev")
    response = chat(client, dev, n=2)
    assert response.status_code == 200, response.text
    body = response.json()
    call_id, index = body["id"], body["tiergate"]["log_index"]
    outputs = entry(engine, index)["fields"]["outputs"]
    with Session(engine) as session:
        rows = session.exec(select(SealedReasoning).where(SealedReasoning.call_id == call_id))
        stored = {r.choice_index: r.sealed for r in rows}
    assert sorted(stored) == [0, 1]
    for output in outputs:
        assert output["reasoning_sha256"] == sha256_of(TRACE)
        sealed = stored[output["index"]]
        assert output["reasoning_sealed"] == {"key_id": key_id, "sha256": digest_of(sealed)}
        assert TRACE.encode() not in sealed

    # Disclosure: the org's publisher only (others: the same 404 as for no trace), logged.
    disclose = f"/api/calls/{call_id}/reasoning/disclose"
    assert client.post(disclose, **_h(dev)).status_code == 403  # no publish scope
    rival = make_account("rival", "publisher", org="other")
    assert client.post(disclose, **_h(rival)).status_code == 404
    assert client.post("/api/calls/nope/reasoning/disclose", **_h(published)).status_code == 404
    assert entries(engine, "reasoning.disclosed") == []
    got = client.post(disclose, **_h(published))
    assert got.status_code == 200, got.text
    disclosure = got.json()
    [logged] = entries(engine, "reasoning.disclosed")
    assert logged["fields"]["call_id"] == call_id
    assert logged["fields"]["log_index"] == index
    assert [c["sha256"] for c in logged["fields"]["choices"]] == [
        o["reasoning_sealed"]["sha256"] for o in outputs
    ]
    assert disclosure["disclosure_log_index"] > index

    vkey = client.get("/log/vkey").text.strip()
    path = tmp_path / "disclosure.json"
    path.write_text(json.dumps(disclosure))

    def open_(disclosure_file: Path, key: Path, *extra: str) -> Result:
        args = ["open-trace", str(disclosure_file), "--key", str(key), "--vkey", vkey, *extra]
        return runner.invoke(group, args)

    opened = open_(path, key_file, "--choice", "1", "--out", str(tmp_path / "trace.txt"))
    assert opened.exit_code == 0, opened.output
    assert "matches the reasoning_sha256 entry" in opened.output
    assert (tmp_path / "trace.txt").read_text(encoding="utf-8") == TRACE

    # A wrong key does not open it.
    other_key = tmp_path / "other.key"
    assert runner.invoke(group, ["keygen", "--out", str(other_key)]).exit_code == 0
    wrong = open_(path, other_key)
    assert wrong.exit_code != 0
    assert "does not open with this key" in wrong.output

    # A tampered sealed trace is not the one the entry committed to.
    tampered = _tamper(disclosure, 0)
    bad_path = tmp_path / "tampered.json"
    bad_path.write_text(json.dumps(tampered))
    refused = open_(bad_path, key_file)
    assert refused.exit_code == 1
    assert "is not the one entry" in refused.output

    # Another call's trace swapped in under this call's entry does not verify either.
    swapped = dict(disclosure, entry=disclosure["entry"].replace(call_id, "chatcmpl-x"))
    (tmp_path / "swapped.json").write_text(json.dumps(swapped))
    assert open_(tmp_path / "swapped.json", key_file).exit_code == 1

    # Removing the key stops sealing; the traces already sealed stay disclosable.
    removed = client.put("/api/orgs/acme/policy", json={"auditor_key": ""}, **_h(published))
    assert removed.json()["auditor_key"] is None
    later = chat(client, dev).json()
    assert (
        "reasoning_sealed"
        not in entry(engine, later["tiergate"]["log_index"])["fields"]["outputs"][0]
    )


def _h(account: Account) -> dict[str, Any]:
    return {"headers": account.headers}


def _tamper(disclosure: dict[str, Any], choice: int) -> dict[str, Any]:
    choices = []
    for item in disclosure["choices"]:
        if item["choice"] == choice:
            raw = bytearray(base64.b64decode(item["sealed"]))
            raw[-1] ^= 1
            item = dict(item, sealed=base64.b64encode(bytes(raw)).decode())
        choices.append(item)
    return dict(disclosure, choices=choices)
