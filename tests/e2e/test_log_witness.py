"""Witness cosigning: a real `tiergate log witness serve` process next to a real gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from gateway.app import create_app
from gateway.cli.log import group
from gateway.config import Settings
from gateway.ledger.anchor import ANCHOR_FILE
from gateway.ledger.errors import LogTampered
from licensing.tlog.checkpoint import Checkpoint
from licensing.tlog.cosignature import CosignatureSigner
from licensing.tlog.note import Signer, sign_note
from licensing.tlog.witness import format_add_checkpoint
from tests.conftest import LiveServer, free_port
from tests.gateway.test_ledger import append_events, ledger_of
from tests.gateway.test_ledger_rollback import _Backup

pytestmark = pytest.mark.e2e


@contextmanager
def witness_process(tmp_path: Path, log_vkey: str) -> Iterator[tuple[str, str]]:
    """Create a witness key with the CLI and serve it; yields (URL, witness vkey)."""
    key = tmp_path / "witness.key"
    made = CliRunner().invoke(
        group, ["witness", "keygen", "--name", "witness.test/w1", "--out", str(key)]
    )
    assert made.exit_code == 0, made.output
    vkey = made.output.strip()
    port = free_port()
    log_path = tmp_path / "witness.log"
    command = [sys.executable, "-m", "gateway.cli.main", "log", "witness", "serve"]
    args = ["--state", str(tmp_path / "wstate"), "--key", str(key), "--log-vkey", log_vkey]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, *args, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{url}/vkey", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield url, vkey
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _log_signer(app: FastAPI) -> Signer:
    return ledger_of(app).key().signer


def _wait_for_cosignature(url: str, size: int) -> str:
    deadline = time.monotonic() + 30
    while True:
        note = httpx.get(f"{url}/log/checkpoint").text
        if note.splitlines()[1] == str(size) and "\u2014 witness.test/w1 " in note:
            return note
        assert time.monotonic() < deadline, note
        time.sleep(0.05)


def test_gateway_collects_cosignatures_and_verify_requires_them(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    plain = create_app(settings, engine=engine)
    log_vkey = ledger_of(plain).key().verifier.vkey
    with witness_process(tmp_path, log_vkey) as (witness_url, witness_vkey):
        witnessed = settings.model_copy(update={"log_witnesses": [f"{witness_vkey} {witness_url}"]})
        app = create_app(witnessed, engine=engine)
        server = LiveServer(app)
        server.start()
        try:
            append_events(engine, 6)
            ledger_of(app).integrate_now()
            note = _wait_for_cosignature(server.url, 6)
            assert note.count("\u2014 ") == 2  # the log's signature and the witness's
            append_events(engine, 3)
            ledger_of(app).integrate_now()
            _wait_for_cosignature(server.url, 9)  # old 6 + a consistency proof, cosigned

            def verify(*extra: str) -> tuple[int, str]:
                result = CliRunner().invoke(
                    group, ["verify", "--gateway", server.url, "--vkey", log_vkey, *extra]
                )
                return result.exit_code, result.output

            code, out = verify("--witness", witness_vkey, "--min-witnesses", "1")
            assert code == 0, out
            assert "1 witness cosignature(s) verify (witness.test/w1); 1 required" in out
            other = CosignatureSigner.generate("witness.test/w2").verifier().vkey
            code, out = verify(
                "--witness", witness_vkey, "--witness", other, "--min-witnesses", "2"
            )
            assert code == 1
            assert "1 valid witness cosignature(s), 2 required" in out

            # The witness itself refuses forks and bad proofs from the log's own key.
            signer = _log_signer(app)
            fork = Checkpoint(signer.name, 9, bytes(32))
            forked = sign_note(fork.body(), [signer])
            answer = httpx.post(
                f"{witness_url}/add-checkpoint", content=format_add_checkpoint(9, [], forked)
            )
            assert answer.status_code == 422, answer.text
            stale = httpx.post(
                f"{witness_url}/add-checkpoint", content=format_add_checkpoint(0, [], forked)
            )
            assert stale.status_code == 409
            assert stale.text == "9\n"
            assert stale.headers["content-type"].startswith("text/x.tlog.size")
            bigger = sign_note(Checkpoint(signer.name, 12, bytes(32)).body(), [signer])
            bad_proof = httpx.post(
                f"{witness_url}/add-checkpoint",
                content=format_add_checkpoint(9, [bytes(32)] * 3, bigger),
            )
            assert bad_proof.status_code == 422
            impostor = Signer(signer.name, bytes(32))
            foreign = sign_note(fork.body(), [impostor])
            assert (
                httpx.post(
                    f"{witness_url}/add-checkpoint", content=format_add_checkpoint(9, [], foreign)
                ).status_code
                == 403
            )
            unknown = sign_note(Checkpoint("other.example/log", 1, bytes(32)).body(), [impostor])
            assert (
                httpx.post(
                    f"{witness_url}/add-checkpoint", content=format_add_checkpoint(0, [], unknown)
                ).status_code
                == 404
            )
            assert (
                httpx.post(f"{witness_url}/add-checkpoint", content=b"old x\n").status_code == 400
            )
            refused = (tmp_path / "wstate" / "refused.log").read_text()
            assert refused.count("witness_proof_invalid") == 2
        finally:
            server.stop()


def test_restore_with_the_keys_dir_is_refused_by_the_witness_before_signing(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    # Worst case: the database AND the checkpoint anchor go back to an older backup. The
    # witness still remembers the larger tree, so the gateway stops before signing a fork.
    plain = create_app(settings, engine=engine)
    log_vkey = ledger_of(plain).key().verifier.vkey
    with witness_process(tmp_path, log_vkey) as (witness_url, witness_vkey):
        witnessed = settings.model_copy(update={"log_witnesses": [f"{witness_vkey} {witness_url}"]})
        first = create_app(witnessed, engine=engine)
        append_events(engine, 5)
        ledger_of(first).tick()
        ledger_of(first).tick()  # integrates 5 and collects the cosignature
        anchor = witnessed.resolved_keys_dir / ANCHOR_FILE
        old_anchor = anchor.read_bytes()
        backup = _Backup(engine, witnessed, tmp_path / "backup.db")
        append_events(engine, 5)
        ledger_of(first).tick()
        assert ledger_of(first).status.tampered is None
        backup.restore(engine)
        anchor.write_bytes(old_anchor)  # the keys dir restored too
        restarted = create_app(witnessed, engine=engine)
        runtime = ledger_of(restarted)
        assert runtime.self_check() is None  # database and anchor agree with each other...
        append_events(engine, 7)
        runtime.tick()  # ...but the witness has cosigned size 10
        assert runtime.readiness().startswith("tampered: tlog_inconsistent: rollback: witness")
        with pytest.raises(LogTampered):
            runtime.integrate_now()
        with engine.connect() as connection:
            sizes = [r[0] for r in connection.exec_driver_sql("SELECT size FROM log_checkpoints")]
        assert max(sizes) == 5
