"""`tiergate auditor`: the auditor's side of sealed reasoning traces.

``keygen`` makes the X25519 key pair (the publisher sets the public half as its auditor key:
``PUT /api/orgs/ORG/policy``); ``disclose`` fetches a call's sealed traces (a logged event);
``open-trace`` works offline: it verifies the receipt of the call's log entry, checks the
sealed bytes are the ones that entry committed to, opens them with the private key and
checks the trace against the entry's ``reasoning_sha256``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

import click

from gateway.cli._audit import AuditFailed
from gateway.cli._audit import read_bounded as _read_bounded
from gateway.cli._audit import verifier_of as _verifier
from gateway.cli._client import api_client, call, gateway_options

__all__ = ["group"]


@click.group(name="auditor")
def group() -> None:
    """Auditor keys and sealed reasoning traces."""


@group.command("keygen")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (hex; created with mode 0600, never overwritten).",
)
def keygen(out: Path) -> None:
    """Make an auditor key pair; prints the public key to give the publisher."""
    from gateway.generation.sealing import generate_auditor_key
    from gateway.services.publisher_policy import auditor_key_id

    private, public = generate_auditor_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{out} exists; not overwriting a key") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(private.hex() + "\n")
    click.echo(f"public key: {public.hex()}")
    click.echo(f"key id: {auditor_key_id(public)}")


@group.command("disclose")
@click.argument("call_id")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the disclosure (JSON: sealed traces, entry, receipt).",
)
@gateway_options
def disclose(call_id: str, out: Path, gateway: str, token: str | None) -> None:
    """Fetch CALL_ID's sealed traces (the gateway logs `reasoning.disclosed` first)."""
    with api_client(gateway, token) as http:
        body = call(
            http,
            "POST",
            f"/api/calls/{call_id}/reasoning/disclose",
            what="disclosing the sealed traces",
        )
    out.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    click.echo(f"disclosure of call {call_id} logged as entry {body['disclosure_log_index']}")


def _ok(message: str) -> None:
    click.echo(f"ok: {message}")


def _private_key(path: Path) -> bytes:
    try:
        key = binascii.unhexlify(_read_bounded(path, "key file").strip())
    except (binascii.Error, ValueError):
        raise click.UsageError(
            f"{path} is not a hex private key (tiergate auditor keygen)"
        ) from None
    if len(key) != 32:
        raise click.UsageError(f"{path} is not a 32-byte X25519 private key")
    return key


def _sealed_choice(body: dict[str, Any], choice: int) -> tuple[bytes, str]:
    for item in body.get("choices", []):
        if isinstance(item, dict) and item.get("choice") == choice:
            try:
                return base64.b64decode(str(item["sealed"]), validate=True), str(item["key_id"])
            except (binascii.Error, ValueError, KeyError):
                raise AuditFailed(f"choice {choice}'s sealed trace is not base64") from None
    raise AuditFailed(f"the disclosure has no sealed trace for choice {choice}")


@group.command("open-trace")
@click.argument("disclosure_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The auditor's private key file (tiergate auditor keygen).",
)
@click.option("--vkey", required=True, help="The log's verifier key, or @FILE.")
@click.option("--choice", default=0, show_default=True, help="Which choice's trace to open.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the trace here (default: standard output, after the checks).",
)
def open_trace_command(
    disclosure_file: Path, key_file: Path, vkey: str, choice: int, out: Path | None
) -> None:
    """Open a sealed trace offline and prove it is the one the log committed to."""
    from gateway.generation.reasoning import check_trace
    from gateway.generation.sealing import SealedTraceInvalid, open_trace
    from gateway.ledger.events import digest_of
    from licensing.errors import TransparencyLogError
    from licensing.tlog.receipt import verify_receipt

    if vkey.startswith("@"):
        vkey = _read_bounded(Path(vkey[1:]), "vkey file").decode("utf-8", "replace")
    try:
        body = json.loads(_read_bounded(disclosure_file, "disclosure file"))
        entry, receipt, call_id = body["entry"], body["receipt"], str(body["call_id"])
        fields = json.loads(entry)["fields"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise click.UsageError(
            "DISCLOSURE_FILE is not a disclosure (tiergate auditor disclose)"
        ) from None
    try:
        verified = verify_receipt(entry.encode("utf-8"), receipt, [_verifier(vkey)])
    except TransparencyLogError as exc:
        raise AuditFailed(f"receipt does not verify: {exc}") from None
    checkpoint = verified.checkpoint
    _ok(f"entry {verified.index} is in {checkpoint.origin} at size {checkpoint.size}")
    if fields.get("call_id") != call_id:
        raise AuditFailed(f"entry {verified.index} is not the log entry of call {call_id}")
    sealed, key_id = _sealed_choice(body, choice)
    output = next(
        (o for o in fields.get("outputs", []) if isinstance(o, dict) and o.get("index") == choice),
        {},
    )
    committed = output.get("reasoning_sealed") or {}
    if committed.get("sha256") != digest_of(sealed) or committed.get("key_id") != key_id:
        raise AuditFailed(
            f"the sealed trace of choice {choice} is not the one entry {verified.index} logged"
        )
    _ok(f"the sealed trace of choice {choice} is the one entry {verified.index} committed to")
    try:
        trace = open_trace(sealed, _private_key(key_file), call_id=call_id, choice=choice)
    except SealedTraceInvalid as exc:
        raise AuditFailed(exc.message) from None
    problems = check_trace(entry, choice, reasoning=trace)
    if problems:
        raise AuditFailed("; ".join(problems))
    _ok(f"the opened trace matches the reasoning_sha256 entry {verified.index} logged")
    if out is not None:
        out.write_text(trace, encoding="utf-8")
    else:
        click.echo(trace)
