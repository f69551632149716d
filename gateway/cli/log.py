"""`tiergate log`: audit a gateway's transparency log over HTTP, and verify receipts offline."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli._audit import AuditFailed
from gateway.cli._audit import read_bounded as _read_bounded
from gateway.cli._audit import verifier_of as _verifier

if TYPE_CHECKING:
    import httpx

    from licensing.tlog.checkpoint import Checkpoint
    from licensing.tlog.cosignature import CosignatureVerifier
    from licensing.tlog.note import Verifier

_PAGE = 1000


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise AuditFailed(f"the gateway sent a {what} that is not base64") from None


def _get(http: httpx.Client, path: str, **params: Any) -> httpx.Response:
    import httpx

    try:
        response = http.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise AuditFailed(f"GET {path}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        detail = response.text[:300]
        with_code = response.headers.get("content-type", "").startswith("application/problem")
        if with_code:
            body = response.json()
            detail = f"{body.get('code')}: {body.get('detail')}"
        raise AuditFailed(f"GET {path} answered {response.status_code} ({detail})")
    return response


# With `--json`, checks that passed are collected here instead of printed line by line.
_collected: list[str] | None = None


def _ok(message: str) -> None:
    if _collected is not None:
        _collected.append(message)
    else:
        click.echo(f"ok: {message}")


@click.group()
def group() -> None:
    """Read and audit the transparency log."""


def _add_witness_group() -> None:
    from gateway.cli.log_witness import witness_group

    group.add_command(witness_group)


_add_witness_group()


def _load_state(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        state = json.loads(_read_bounded(path, "state file"))
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"state file {path} is not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise click.UsageError(f"state file {path} is not a JSON object")
    return state


def _check_consistency(http: httpx.Client, old: Checkpoint, new: Checkpoint) -> None:
    from licensing.errors import TransparencyLogError
    from licensing.tlog.audit import check_consistency

    body = _get(http, "/log/proof/consistency", **{"from": old.size, "to": new.size}).json()
    proof = [_b64(h, "consistency hash") for h in body.get("consistency_path", [])]
    try:
        check_consistency(old, new, proof)
    except TransparencyLogError as exc:
        raise AuditFailed(f"size {new.size} does not extend size {old.size}: {exc}") from None
    _ok(f"checkpoint {new.size} is consistent with the last one seen ({old.size})")


def _recompute(http: httpx.Client, checkpoint: Checkpoint) -> int:
    """Download every entry of ``checkpoint`` and recompute its root; returns entries read."""
    import hmac

    from licensing.tlog.merkle import leaf_hash, root_from_leaf_hashes

    leaves: list[bytes] = []
    readable = 0
    while len(leaves) < checkpoint.size:
        start = len(leaves)
        end = min(start + _PAGE, checkpoint.size)
        page = _get(http, "/log/entries", start=start, end=end).json()
        for item in page.get("entries", []):
            index = len(leaves)
            if item.get("index") != index:
                raise AuditFailed(f"entry {index} is missing (got {item.get('index')})")
            claimed = _b64(str(item.get("leaf_hash", "")), "leaf hash")
            entry = item.get("entry")
            if entry is not None:
                readable += 1
                if not hmac.compare_digest(leaf_hash(entry.encode("utf-8")), claimed):
                    raise AuditFailed(f"entry {index} does not hash to its leaf hash")
            leaves.append(claimed)
        if len(leaves) == start:
            raise AuditFailed(f"the gateway returned no entries from {start}")
    root = root_from_leaf_hashes(leaves)
    if not hmac.compare_digest(root, checkpoint.root_hash):
        raise AuditFailed(f"the {checkpoint.size} entries do not hash to the signed root")
    _ok(f"recomputed the root from {len(leaves)} entries ({readable} readable): matches")
    return len(leaves)


def _witness_verifier(vkey: str) -> CosignatureVerifier:
    from licensing.errors import TransparencyLogError
    from licensing.tlog.cosignature import CosignatureVerifier

    try:
        return CosignatureVerifier.from_vkey(vkey.strip())
    except TransparencyLogError as exc:
        raise click.BadParameter(f"not a witness vkey: {exc}", param_hint="--witness") from None


def _check_cosignatures(
    note: str, log_key: Verifier, witnesses: list[CosignatureVerifier], minimum: int
) -> None:
    from licensing.errors import TransparencyLogError
    from licensing.tlog.cosignature import open_cosigned_checkpoint

    try:
        _, found = open_cosigned_checkpoint(note, [log_key], witnesses, min_witnesses=minimum)
    except TransparencyLogError as exc:
        raise AuditFailed(f"witness cosignatures: {exc}") from None
    names = ", ".join(c.witness for c in found) or "none"
    _ok(f"{len(found)} witness cosignature(s) verify ({names}); {minimum} required")


@group.command()
@click.option(
    "--gateway",
    "gateway_url",
    envvar="TIERGATE_GATEWAY",
    required=True,
    metavar="URL",
    help="Gateway base URL (or $TIERGATE_GATEWAY).",
)
@click.option("--vkey", default=None, help="The log's verifier key (name+hexid+base64).")
@click.option(
    "--vkey-file", type=click.Path(dir_okay=False, path_type=Path), help="File with the vkey."
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file remembering the last checkpoint seen (created, then updated).",
)
@click.option("--full", is_flag=True, help="Download every entry and recompute the root.")
@click.option(
    "--witness",
    "witness_vkeys",
    multiple=True,
    help="A witness vkey (C2SP tlog-cosignature, type 0x04) whose cosignature counts; repeat.",
)
@click.option(
    "--min-witnesses",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Fail unless at least N of the --witness keys cosigned the checkpoint.",
)
@click.option(
    "--token",
    envvar="TIERGATE_TOKEN",
    default=None,
    help="API token, or $TIERGATE_TOKEN (entries you may read are shown).",
)
@click.option("--timeout", default=30.0, show_default=True, help="HTTP timeout in seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary for scripts.")
def verify(
    gateway_url: str,
    vkey: str | None,
    vkey_file: Path | None,
    state_path: Path | None,
    full: bool,
    witness_vkeys: tuple[str, ...],
    min_witnesses: int,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Verify the latest checkpoint, its consistency with the last one seen, and (--full) all
    entries. Exits non-zero on any failure."""
    global _collected
    _collected = [] if as_json else None
    try:
        checkpoint = _verify(
            gateway_url,
            vkey,
            vkey_file,
            state_path,
            full,
            witness_vkeys,
            min_witnesses,
            token,
            timeout,
        )
        checks = list(_collected or [])
    finally:
        _collected = None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "verified": True,
                    "origin": checkpoint.origin,
                    "size": checkpoint.size,
                    "root_hash": base64.b64encode(checkpoint.root_hash).decode(),
                    "checks": checks,
                },
                indent=2,
            )
        )


def _verify(
    gateway_url: str,
    vkey: str | None,
    vkey_file: Path | None,
    state_path: Path | None,
    full: bool,
    witness_vkeys: tuple[str, ...],
    min_witnesses: int,
    token: str | None,
    timeout: float,
) -> Checkpoint:
    import httpx

    from licensing.errors import TransparencyLogError
    from licensing.tlog.checkpoint import open_checkpoint

    witnesses = [_witness_verifier(v) for v in witness_vkeys]
    if min_witnesses > len(witnesses):
        raise click.UsageError(f"--min-witnesses {min_witnesses} needs that many --witness keys")
    state = _load_state(state_path)
    if vkey_file is not None:
        vkey = _read_bounded(vkey_file, "vkey file").decode("utf-8", "replace")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=gateway_url.rstrip("/"), headers=headers, timeout=timeout) as http:
        if vkey is None and state is not None and isinstance(state.get("vkey"), str):
            vkey = state["vkey"]
        if vkey is None:
            vkey = _get(http, "/log/vkey").text
            click.echo("warning: trusting the vkey the gateway sent (pass --vkey to pin it)")
        verifier = _verifier(vkey)
        note = _get(http, "/log/checkpoint").text
        try:
            checkpoint = open_checkpoint(note, [verifier])
        except TransparencyLogError as exc:
            raise AuditFailed(f"checkpoint does not verify: {exc}") from None
        _ok(f"checkpoint of {checkpoint.origin} size {checkpoint.size} signed by {verifier.name}")
        if witnesses:
            _check_cosignatures(note, verifier, witnesses, min_witnesses)
        if state is not None and isinstance(state.get("checkpoint"), str):
            try:
                old = open_checkpoint(state["checkpoint"], [verifier])
            except TransparencyLogError as exc:
                raise AuditFailed(f"the saved checkpoint does not verify: {exc}") from None
            if old.origin != checkpoint.origin:
                raise AuditFailed(f"origin changed from {old.origin} to {checkpoint.origin}")
            _check_consistency(http, old, checkpoint)
        if full:
            _recompute(http, checkpoint)
    if state_path is not None:
        state_path.write_text(
            json.dumps({"vkey": verifier.vkey, "checkpoint": note}, indent=2) + "\n"
        )
        _ok(f"saved checkpoint {checkpoint.size} to {state_path}")
    return checkpoint


@group.command("verify-receipt")
@click.argument("receipt_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--vkey", required=True, help="The log's verifier key, or @FILE.")
@click.option(
    "--entry",
    "entry_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The entry bytes, when RECEIPT_FILE is a bare tlog-proof (not the gateway's JSON).",
)
@click.option(
    "--reasoning",
    "reasoning_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A chat choice's reasoning trace (UTF-8): check it is the one this entry logged.",
)
@click.option(
    "--answer",
    "answer_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A chat choice's answer (`content`, UTF-8): check it is the one this entry logged.",
)
@click.option("--choice", default=0, show_default=True, help="The choice --reasoning/--answer are.")
def verify_receipt_command(
    receipt_file: Path,
    vkey: str,
    entry_file: Path | None,
    reasoning_file: Path | None,
    answer_file: Path | None,
    choice: int,
) -> None:
    """Verify offline that an entry is in the log (RECEIPT_FILE: JSON from /log/receipt).

    With --reasoning and/or --answer, also check a chat answer's trace and answer against the
    digests that entry (a ``generation.completed``) logged for choice --choice.
    """
    from licensing.errors import TransparencyLogError
    from licensing.tlog.receipt import verify_receipt

    if vkey.startswith("@"):
        vkey = _read_bounded(Path(vkey[1:]), "vkey file").decode("utf-8", "replace")
    verifier = _verifier(vkey)
    raw = _read_bounded(receipt_file, "receipt file")
    if entry_file is not None:
        entry, receipt = _read_bounded(entry_file, "entry file"), raw
    else:
        try:
            body = json.loads(raw)
            entry, receipt = body["entry"].encode("utf-8"), body["receipt"]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise click.UsageError(
                "RECEIPT_FILE is not the gateway's receipt JSON; pass --entry for a bare receipt"
            ) from None
    try:
        verified = verify_receipt(entry, receipt, [verifier])
    except TransparencyLogError as exc:
        raise AuditFailed(f"receipt does not verify: {exc}") from None
    cp = verified.checkpoint
    _ok(f"entry {verified.index} is in {cp.origin} at size {cp.size}")
    if reasoning_file is None and answer_file is None:
        return
    from gateway.generation.reasoning import check_trace

    def text_of(path: Path | None, what: str) -> str | None:
        if path is None:
            return None
        try:
            return _read_bounded(path, what).decode("utf-8")
        except UnicodeDecodeError:
            raise click.UsageError(f"the {what} is not UTF-8") from None

    reasoning = text_of(reasoning_file, "reasoning file")
    answer = text_of(answer_file, "answer file")
    problems = check_trace(entry, choice, reasoning=reasoning, answer=answer)
    if problems:
        raise AuditFailed("; ".join(problems))
    shown = " and ".join(
        n for n, t in (("reasoning", reasoning), ("answer", answer)) if t is not None
    )
    _ok(f"the {shown} of choice {choice} match the digests entry {verified.index} logged")
