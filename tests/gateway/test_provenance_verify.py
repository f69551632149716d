"""`tiergate provenance verify`: a Content Credential checked offline, and each tamper refused
with its own typed error and exit status (text, manifest bytes, proof, checkpoint signature,
wrong root, proof for another entry)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from gateway.cli.main import cli
from gateway.cli.provenance import EXIT_CODES
from gateway.db.timeutil import utcnow
from gateway.services.provenance import ProvenanceService, embed_in_text, manifest_id_for
from gateway.services.provenance_certs import ensure_local_ca, load_signing_credentials
from gateway.services.provenance_verify import (
    CheckpointUnverified,
    HardBindingMismatch,
    LogProofInvalid,
    LogProofMismatch,
    LogProofMissing,
    ManifestInvalid,
    ManifestMissing,
    ManifestUntrusted,
    parse_log_proof,
    verify_offline,
)
from licensing.tlog.checkpoint import Checkpoint, sign_checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import NodeStore, inclusion_proof, leaf_hash
from licensing.tlog.note import Signer
from licensing.tlog.receipt import format_receipt

TEXT = "A logged completion.\nCafe\u0301 \u2014 \u201cquoted\u201d, kept byte for byte."
CALL = "cmpl-verify"
INDEX = 3
ORIGIN = "tiergate.test/log"


@dataclass
class World:
    root: Path
    store: bytes
    vkey: str
    match: dict[str, Any]
    receipt: dict[str, Any]
    signer: Signer


def _entry(index: int) -> bytes:
    call = CALL if index == INDEX else f"cmpl-other-{index}"
    return json.dumps({"kind": "generation", "fields": {"call_id": call}}).encode()


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A credential naming log entry 3, and a signed 6-entry log that includes it.

    Signed the way the gateway signs (no database: the service's engine is not used)."""
    now = utcnow()
    credentials = load_signing_credentials(*ensure_local_ca(tmp_path / "keys", now), now=now)
    service = ProvenanceService(cast(Engine, None), credentials, "https://gateway.test")
    manifest_id = manifest_id_for(CALL, 0)
    manifest = service._manifest(
        manifest_id=manifest_id,
        call_id=CALL,
        choice_index=0,
        log_index=INDEX,
        model="acme/tiny@1.0.0:open",
        release_digest="sha256:" + "ab" * 32,
        key_id="0123456789abcdef",
        payload=42,
        text_sha256="",
        logged_at="2026-12-02T17:00:00Z",
    )
    store = service.sign_text(manifest, TEXT)
    root = tmp_path / "root.pem"
    root.write_bytes(service.root_pem)
    entries = [_entry(i) for i in range(6)]
    appended = append_batch(CompactRange.empty(), [leaf_hash(e) for e in entries])
    nodes = NodeStore(appended.nodes)
    signer = Signer.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 6, appended.root), signer, previous=None)
    path = inclusion_proof(INDEX, 6, nodes)
    match = {
        "manifestId": manifest_id,
        "similarityScore": 100,
        "tiergate": {
            "call_id": CALL,
            "choice_index": 0,
            "log_index": INDEX,
            "inclusion_proof": {
                "index": INDEX,
                "tree_size": 6,
                "leaf_hash": leaf_hash(entries[INDEX]).hex(),
                "root_hash": appended.root.hex(),
                "inclusion_path": [h.hex() for h in path],
                "checkpoint": note,
            },
        },
    }
    receipt = {
        "index": INDEX,
        "entry": entries[INDEX].decode(),
        "receipt": format_receipt(INDEX, path, note),
    }
    return World(root, store, signer.verifier().vkey, match, receipt, signer)


def _verify(world: World, text: str = TEXT, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "store": world.store,
        "proof": parse_log_proof({"matches": [world.match]}),
        "trust_anchor": world.root.read_bytes(),
        "log_vkey": world.vkey,
    }
    args.update(kw)
    return verify_offline(text, **args)


def test_a_credential_and_its_proof_verify_offline(world: World) -> None:
    result = _verify(world)
    assert (result.call_id, result.log_index, result.model) == (CALL, 3, "acme/tiny@1.0.0:open")
    assert (result.checkpoint_origin, result.checkpoint_size) == (ORIGIN, 6)
    assert not result.entry_checked
    by_receipt = _verify(world, proof=parse_log_proof(world.receipt))
    assert by_receipt.entry_checked


def test_the_manifest_can_come_embedded_in_the_text(world: World) -> None:
    result = _verify(world, embed_in_text(TEXT, world.store), store=None)
    assert result.text_source == "wrapper"
    with pytest.raises(ManifestMissing):
        _verify(world, store=None)


def test_tampered_text_is_refused(world: World) -> None:
    with pytest.raises(HardBindingMismatch):
        _verify(world, TEXT.replace("logged", "lodged"))
    with pytest.raises(HardBindingMismatch):  # the wrapper moved onto other text
        _verify(world, embed_in_text(TEXT + "!", world.store), store=None)


@pytest.mark.parametrize(
    "forge",
    [
        lambda s: s[: len(s) // 2],
        lambda s: s[:-40] + bytes(b ^ 0x55 for b in s[-40:]),
    ],
    ids=["truncated", "flipped-signature"],
)
def test_tampered_manifest_bytes_are_refused(world: World, forge: Any) -> None:
    with pytest.raises(ManifestInvalid):
        _verify(world, store=forge(world.store))


def test_a_wrong_root_is_refused(world: World, tmp_path: Path) -> None:
    *_, other = ensure_local_ca(tmp_path / "other", utcnow())
    with pytest.raises(ManifestUntrusted):
        _verify(world, trust_anchor=other.read_bytes())


def _with_proof(world: World, **changes: Any) -> Any:
    match = json.loads(json.dumps(world.match))
    match["tiergate"]["inclusion_proof"].update(changes)
    return parse_log_proof(match)


def test_a_tampered_proof_is_refused(world: World) -> None:
    proof = world.match["tiergate"]["inclusion_proof"]
    flipped = [("00" if h[:2] != "00" else "11") + h[2:] for h in proof["inclusion_path"]]
    with pytest.raises(LogProofInvalid):
        _verify(world, proof=_with_proof(world, inclusion_path=flipped))
    with pytest.raises(LogProofInvalid):  # a leaf that is not the logged one
        _verify(world, proof=_with_proof(world, leaf_hash=leaf_hash(b"forged").hex()))
    with pytest.raises(LogProofInvalid):  # a path cut short
        _verify(world, proof=_with_proof(world, inclusion_path=proof["inclusion_path"][:-1]))


def test_a_proof_for_another_entry_is_refused(world: World) -> None:
    with pytest.raises(LogProofMismatch):
        _verify(world, proof=_with_proof(world, index=2))
    receipt = dict(world.receipt, entry=_entry(2).decode())
    with pytest.raises(LogProofMismatch):  # the entry of another call, re-hashed
        _verify(world, proof=parse_log_proof(receipt))


def test_a_checkpoint_not_signed_by_the_log_key_is_refused(world: World) -> None:
    note = world.match["tiergate"]["inclusion_proof"]["checkpoint"]
    body, _, sig = note.rpartition("\n\u2014 ")
    raw = bytearray(base64.b64decode(sig.split(" ", 1)[1]))
    raw[-1] ^= 0x01
    forged = f"{body}\n\u2014 {sig.split(' ', 1)[0]} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(CheckpointUnverified):
        _verify(world, proof=_with_proof(world, checkpoint=forged))
    impostor = Signer.generate(ORIGIN)  # same log name, another key
    with pytest.raises(CheckpointUnverified):
        _verify(world, log_vkey=impostor.verifier().vkey)


@pytest.mark.parametrize(
    "document",
    [[], {"matches": []}, {"tiergate": {"inclusion_proof": None}}, {"something": 1}],
    ids=["list", "no-match", "not-integrated", "unknown"],
)
def test_documents_that_are_no_proof_are_refused(document: Any) -> None:
    with pytest.raises(LogProofMissing):
        parse_log_proof(document)


# ---------------------------------------------------------------- the command


def _files(world: World, tmp_path: Path, match: dict[str, Any] | None = None) -> list[str]:
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "manifest.c2pa").write_bytes(world.store)
    (tmp_path / "match.json").write_text(json.dumps(match or world.match))
    (tmp_path / "log.vkey").write_text(world.vkey)
    return [
        "provenance",
        "verify",
        str(tmp_path / "text.txt"),
        "--manifest",
        str(tmp_path / "manifest.c2pa"),
        "--root",
        str(world.root),
        "--proof",
        str(tmp_path / "match.json"),
        "--checkpoint-vkey",
        f"@{tmp_path / 'log.vkey'}",
    ]


def test_the_command_verifies_and_reports_json(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, _files(world, tmp_path))
    assert done.exit_code == 0, done.output
    assert f"made this text in call {CALL}" in done.output
    assert "signed by the log key" in done.output
    done = runner.invoke(cli, [*_files(world, tmp_path), "--json"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert body["verified"] is True
    assert body["checkpoint"] == {"origin": ORIGIN, "size": 6}


def test_the_command_reads_stdin_and_the_embedded_wrapper(world: World, tmp_path: Path) -> None:
    args = _files(world, tmp_path)
    args = [a for a in args[2:] if not a.endswith(("text.txt", "manifest.c2pa"))]
    args.remove("--manifest")
    done = CliRunner().invoke(
        cli, ["provenance", "verify", "--stdin", *args], input=embed_in_text(TEXT, world.store)
    )
    assert done.exit_code == 0, done.output
    assert f"made this text in call {CALL}" in done.output


def test_each_failure_has_its_own_exit_status(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    args = _files(world, tmp_path)
    (tmp_path / "text.txt").write_text(TEXT + " edited", encoding="utf-8")
    done = runner.invoke(cli, [*args, "--json"])
    assert done.exit_code == EXIT_CODES["c2pa_hard_binding_mismatch"] == 6
    assert json.loads(done.output)["code"] == "c2pa_hard_binding_mismatch"
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    bad = json.loads(json.dumps(world.match))
    bad["tiergate"]["inclusion_proof"]["index"] = 1
    done = runner.invoke(cli, _files(world, tmp_path, bad))
    assert done.exit_code == EXIT_CODES["c2pa_log_proof_mismatch"], done.output
    assert "FAIL [c2pa_log_proof_mismatch]" in done.output
    statuses = set(EXIT_CODES.values())
    assert len(statuses) == len(EXIT_CODES) - 1  # missing manifest and bad wrapper share 3


def test_the_command_refuses_unclear_arguments(world: World, tmp_path: Path) -> None:
    args = _files(world, tmp_path)
    done = CliRunner().invoke(cli, [*args, "--text", "also this"])
    assert done.exit_code == 2
    assert "exactly one of FILE" in done.output
    done = CliRunner().invoke(cli, args[:-4])  # no proof, no --no-log
    assert done.exit_code == 2
    done = CliRunner().invoke(cli, [*args[:-4], "--no-log"])
    assert done.exit_code == 0, done.output
    assert "not checked: the log inclusion proof" in done.output


def test_verification_imports_neither_the_database_nor_the_web_stack_nor_torch() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, gateway.cli.provenance, gateway.services.provenance_verify; "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'fastapi', 'torch') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
