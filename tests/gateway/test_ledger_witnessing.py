"""The gateway's witness client and the witness's state store, without a network."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.errors import ConfigurationError
from gateway.ledger.errors import LogTampered
from gateway.ledger.reads import cosigned_checkpoint
from gateway.ledger.runtime import LedgerRuntime, _witness_pool
from gateway.ledger.witnessing import WitnessEndpoint, WitnessPool
from gateway.witness.store import STATE_FILE, WitnessStateCorrupt, WitnessStore
from licensing.tlog.cosignature import CosignatureSigner
from licensing.tlog.note import NoteSignature, parse_note
from licensing.tlog.witness import WitnessedCheckpoint
from tests.gateway.test_ledger import append_events

BASE_URL = "http://127.0.0.1:8000"


def _runtime(engine: Engine, answer: httpx.MockTransport) -> LedgerRuntime:
    witness = CosignatureSigner.generate("witness.test/w1")
    pool = WitnessPool([WitnessEndpoint(witness.verifier(), "http://w1")], transport=answer)
    runtime = LedgerRuntime(engine, Ed25519PrivateKey.generate(), BASE_URL, witnesses=pool)
    runtime._test_witness = witness  # type: ignore[attr-defined]
    return runtime


def test_cosignature_is_verified_stored_and_served(engine: Engine) -> None:
    seen: list[bytes] = []
    holder: dict[str, CosignatureSigner] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        note = request.content.split(b"\n\n", 1)[1].decode()
        return httpx.Response(200, text=holder["w"].cosign(parse_note(note).text, 42).line())

    runtime = _runtime(engine, httpx.MockTransport(answer))
    holder["w"] = runtime._test_witness  # type: ignore[attr-defined]
    append_events(engine, 3)
    runtime.tick()
    assert seen[0].startswith(b"old 0\n\n")
    with Session(engine) as session:
        served = cosigned_checkpoint(session)
    assert served.count("\u2014 witness.test/w1 ") == 1
    runtime.tick()  # nothing new: no second request
    assert len(seen) == 1


def test_a_forged_cosignature_is_not_stored(engine: Engine) -> None:
    holder: dict[str, CosignatureSigner] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        real = holder["w"]
        forged = NoteSignature(real.name, real.key_id, (42).to_bytes(8, "big") + bytes(64))
        return httpx.Response(200, text=forged.line())

    runtime = _runtime(engine, httpx.MockTransport(answer))
    holder["w"] = runtime._test_witness  # type: ignore[attr-defined]
    append_events(engine, 2)
    runtime.tick()
    assert runtime.readiness() == "ok"
    with Session(engine) as session:
        assert "witness.test" not in cosigned_checkpoint(session)
    assert runtime.witnesses is not None
    assert "does not verify" in runtime.witnesses.errors()["witness.test/w1"]


def test_witness_ahead_of_the_database_is_a_rollback_unless_another_replica_signed(
    engine: Engine,
) -> None:
    witness_size = {"n": 0}
    replica: dict[str, LedgerRuntime] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        if "other" in replica:
            # Another replica signs size 6 (and has it cosigned) while our request is in
            # flight with size 4: the witness is ahead of what we offered, not of the database.
            append_events(engine, 2)
            replica.pop("other").integrate_now()
            witness_size["n"] = 6
        return httpx.Response(409, text=f"{witness_size['n']}\n")

    runtime = _runtime(engine, httpx.MockTransport(answer))
    append_events(engine, 4)
    runtime.integrate_now()
    replica["other"] = LedgerRuntime(engine, runtime._signing_key, BASE_URL)
    runtime.witness_now()
    assert runtime.status.tampered is None
    # The witness has cosigned 9, which this database never signed: rollback.
    witness_size["n"] = 9
    assert runtime.witnesses is not None
    runtime.witnesses._progress.clear()
    with pytest.raises(LogTampered):
        runtime.witness_now()
    assert "rollback: witness witness.test/w1 already cosigned size 9" in runtime.readiness()


def test_witness_rejecting_our_proof_marks_a_fork(engine: Engine) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.content.startswith(b"old 0\n"):
            return httpx.Response(409, text="2\n")
        return httpx.Response(422, text="witness_proof_invalid: no\n")

    runtime = _runtime(engine, httpx.MockTransport(answer))
    append_events(engine, 5)
    runtime.integrate_now()
    with pytest.raises(LogTampered):
        runtime.witness_now()
    assert runtime.readiness().startswith("tampered: tlog_inconsistent: fork: witness")


def test_bad_witness_settings_fail_at_start() -> None:
    with pytest.raises(ConfigurationError):
        _witness_pool(["not-a-vkey http://w1"], 5.0)
    vkey = CosignatureSigner.generate("w").verifier().vkey
    with pytest.raises(ConfigurationError):
        _witness_pool([vkey], 5.0)
    assert _witness_pool([], 5.0) is None


def test_witness_store_persists_and_refuses_a_corrupt_state(tmp_path: Path) -> None:
    store = WitnessStore(tmp_path / "state")
    state = WitnessedCheckpoint("log.example/a", 7, bytes(32))
    assert store.update(lambda latest: (state, "answer")) == "answer"
    assert WitnessStore(tmp_path / "state").load() == {"log.example/a": state}
    assert (store.path.stat().st_mode & 0o777) == 0o600
    (tmp_path / "state" / STATE_FILE).write_text('{"logs": {"log.example/a": {"size": "x"}}}')
    with pytest.raises(WitnessStateCorrupt):
        WitnessStore(tmp_path / "state")
