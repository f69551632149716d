"""An auditor's journey: `tiergate log verify` on a live gateway, offline receipts, tampering."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gateway.cli.log import group
from licensing.tlog.merkle import consistency_proof_node_ids
from tests.conftest import Account, LiveServer
from tests.gateway.test_ledger import append_events, ledger_of, user_id_of

pytestmark = pytest.mark.e2e
MakeAccount = Callable[..., Account]


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(group, list(args), catch_exceptions=False)


def test_auditor_verifies_the_live_log_and_catches_tampering(
    app: FastAPI,
    live_server: LiveServer,
    engine: Engine,
    make_account: MakeAccount,
    tmp_path: Path,
) -> None:
    url = live_server.url
    admin = make_account("root", "admin")
    dev = make_account("dora")
    dev_id, _ = user_id_of(engine, "dora")
    append_events(engine, 5, user_id=dev_id)
    ledger_of(app).integrate_now()
    vkey = httpx.get(f"{url}/log/vkey").text.strip()
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(vkey + "\n")
    state = tmp_path / "state.json"

    first = run_cli(
        "verify",
        "--gateway",
        url,
        "--vkey-file",
        str(vkey_file),
        "--state",
        str(state),
        "--full",
        "--token",
        admin.token,
    )
    assert first.exit_code == 0, first.output
    assert "size 5 signed by 127.0.0.1:8000/tiergate-log" in first.output
    assert "recomputed the root from 5 entries (5 readable): matches" in first.output
    assert json.loads(state.read_text())["vkey"] == vkey
    saved_at_5 = state.read_text()

    append_events(engine, 4, user_id=dev_id)
    ledger_of(app).integrate_now()
    second = run_cli("verify", "--gateway", url, "--state", str(state), "--full")
    assert second.exit_code == 0, second.output
    assert "checkpoint 9 is consistent with the last one seen (5)" in second.output
    assert "(0 readable)" in second.output  # anonymous: leaf hashes only, still enough
    # Scripts: --json, and the gateway from $TIERGATE_GATEWAY like every other command.
    summary = CliRunner().invoke(
        group, ["verify", "--vkey", vkey, "--json"], env={"TIERGATE_GATEWAY": url}
    )
    assert summary.exit_code == 0, summary.output
    report = json.loads(summary.output)
    assert (report["verified"], report["size"]) == (True, 9)
    assert any("signed by" in check for check in report["checks"])

    # A receipt verifies offline; a doctored one does not.
    receipt = httpx.get(f"{url}/log/receipt/7", headers=dev.headers).json()
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(receipt))
    ok = run_cli("verify-receipt", str(receipt_file), "--vkey", vkey)
    assert ok.exit_code == 0, ok.output
    assert "entry 7 is in 127.0.0.1:8000/tiergate-log at size 9" in ok.output
    receipt["entry"] = receipt["entry"].replace("test/", "fake/")
    receipt_file.write_text(json.dumps(receipt))
    bad = run_cli("verify-receipt", str(receipt_file), "--vkey", f"@{vkey_file}")
    assert bad.exit_code == 1
    assert "FAIL: receipt does not verify" in bad.output

    # A wrong key never verifies the checkpoint.
    other = "127.0.0.1:8000/tiergate-log+0a0b0c0d+" + "AT" + "A" * 42 + "="
    wrong = run_cli("verify", "--gateway", url, "--vkey", other)
    assert wrong.exit_code != 0

    # Edit a node the 5 -> 9 consistency proof uses: an auditor holding size 5 notices.
    state.write_text(saved_at_5)
    level, index = consistency_proof_node_ids(5, 9)[0]
    with engine.begin() as connection:
        original = connection.execute(
            text('SELECT hash FROM log_nodes WHERE level = :l AND "index" = :i'),
            {"l": level, "i": index},
        ).scalar_one()
        connection.execute(
            text('UPDATE log_nodes SET hash = :h WHERE level = :l AND "index" = :i'),
            {"h": "00" * 32, "l": level, "i": index},
        )
    forked = run_cli("verify", "--gateway", url, "--state", str(state))
    assert forked.exit_code == 1, forked.output
    assert "FAIL: size 9 does not extend size 5" in forked.output
    with engine.begin() as connection:
        connection.execute(
            text('UPDATE log_nodes SET hash = :h WHERE level = :l AND "index" = :i'),
            {"h": original, "l": level, "i": index},
        )

    # Edit an entry: the full recomputation no longer reaches the signed root.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET entry = replace(entry, 'test/2', 'test/Z') WHERE idx = 2")
        )
    edited = run_cli("verify", "--gateway", url, "--full", "--vkey", vkey)
    assert edited.exit_code == 1, edited.output
    assert "FAIL: the 9 entries do not hash to the signed root" in edited.output
    with_token = run_cli(
        "verify", "--gateway", url, "--full", "--vkey", vkey, "--token", admin.token
    )
    assert "FAIL:" in with_token.output
