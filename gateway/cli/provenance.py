"""`tiergate provenance verify`: check a Content Credential offline (no gateway in the loop)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from gateway.services.provenance_verify import LogProof

_MAX_FILE_BYTES = 4 * 1024 * 1024

# One exit status per failed check, so scripts can tell them apart (0: all verified;
# 1: any other project error; 2: a bug, or a usage error from click).
EXIT_CODES: dict[str, int] = {
    "c2pa_manifest_missing": 3,
    "c2pa_wrapper_invalid": 3,
    "c2pa_manifest_invalid": 4,
    "c2pa_manifest_untrusted": 5,
    "c2pa_hard_binding_mismatch": 6,
    "c2pa_log_proof_missing": 7,
    "c2pa_checkpoint_unverified": 8,
    "c2pa_log_proof_mismatch": 9,
    "c2pa_log_proof_invalid": 10,
}


def _fail(code: str, message: str, *, as_json: bool) -> click.exceptions.Exit:
    """Print a failed check (``FAIL [code]: message``, or a JSON object); its exit status."""
    if as_json:
        body = {"verified": False, "code": code, "detail": message}
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"FAIL [{code}]: {message}", err=True)
    return click.exceptions.Exit(EXIT_CODES.get(code, 1))


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from None
    if len(data) > _MAX_FILE_BYTES:
        raise click.UsageError(f"{what} {path} is larger than {_MAX_FILE_BYTES} bytes")
    return data


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError(f"{what} is not UTF-8") from None


def _manifest_store(data: bytes) -> bytes:
    """Raw ``application/c2pa`` bytes, or a ``content_credentials`` item (JSON, base64)."""
    import base64
    import binascii

    if data[:1] != b"{":
        return data
    try:
        item = json.loads(data)
        return base64.b64decode(item["manifest"], validate=True)
    except (json.JSONDecodeError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise click.UsageError(
            "--manifest is neither a C2PA manifest store nor a content_credentials item"
        ) from None


@click.group()
def group() -> None:
    """Verify C2PA Content Credentials of generated text, offline."""


@group.command("verify")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--text", "text_arg", default=None, help="The text itself instead of FILE.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the text from standard input.")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The manifest store (application/c2pa, or a content_credentials JSON item). "
    "Default: the C2PA text wrapper embedded in the text.",
)
@click.option(
    "--root",
    "root_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The C2PA root certificate (PEM) to trust, e.g. the gateway's published one.",
)
@click.option(
    "--proof",
    "proof_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The log proof: a /c2pa/v1/matches answer, one match, or a /log/receipt answer.",
)
@click.option(
    "--checkpoint-vkey",
    "vkey",
    default=None,
    help="The log's note verifier key, or @FILE (checks the checkpoint's signature).",
)
@click.option(
    "--no-log",
    is_flag=True,
    help="Check the manifest only (no log inclusion proof): says so in the output.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(
    file: Path | None,
    text_arg: str | None,
    from_stdin: bool,
    manifest_path: Path | None,
    root_path: Path,
    proof_path: Path | None,
    vkey: str | None,
    no_log: bool,
    as_json: bool,
) -> None:
    """Verify a text's Content Credential: signature, chain to --root, hard binding over the
    text, and the log inclusion proof against a checkpoint signed by the log key.

    Exit status: 0 verified; 3 no manifest / bad wrapper; 4 manifest invalid (signature);
    5 signer not under --root; 6 text does not match; 7 no usable proof; 8 checkpoint
    signature; 9 proof for another entry; 10 inclusion proof does not verify.
    """
    if sum(x is not None and x is not False for x in (file, text_arg, from_stdin)) != 1:
        raise click.UsageError("give exactly one of FILE, --text or --stdin")
    if no_log and (proof_path is not None or vkey is not None):
        raise click.UsageError("--no-log goes without --proof and --checkpoint-vkey")
    if not no_log and (proof_path is None or vkey is None):
        raise click.UsageError(
            "give --proof and --checkpoint-vkey (or --no-log to check the manifest alone)"
        )
    if file is not None:
        text = _text(_read(file, "text file"), f"text file {file}")
    elif from_stdin:
        text = _text(sys.stdin.buffer.read(_MAX_FILE_BYTES + 1)[:_MAX_FILE_BYTES], "stdin")
    else:
        assert text_arg is not None
        text = text_arg
    store = None if manifest_path is None else _manifest_store(_read(manifest_path, "manifest"))
    root = _read(root_path, "root certificate")
    if vkey is not None and vkey.startswith("@"):
        vkey = _text(_read(Path(vkey[1:]), "vkey file"), "vkey file")

    from gateway.errors import ValidationFailed
    from gateway.services import provenance_verify as pv

    try:
        proof: LogProof | None = None
        if proof_path is not None:
            try:
                document = json.loads(_read(proof_path, "proof"))
            except json.JSONDecodeError:
                raise pv.LogProofMissing(f"{proof_path} is not JSON") from None
            proof = pv.parse_log_proof(document)
        result = pv.verify_offline(text, store=store, proof=proof, trust_anchor=root, log_vkey=vkey)
    except ValidationFailed as exc:
        raise _fail(str(exc.code), exc.message, as_json=as_json) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for check in result.checks:
        click.echo(f"ok: {check}")
    if no_log:
        click.echo("not checked: the log inclusion proof (--no-log)")
    click.echo(
        f"verified: {result.model} made this text in call {result.call_id} "
        f"(choice {result.choice_index}, log index {result.log_index}"
        f"{', ' + result.created if result.created else ''})"
    )
