"""`tiergate log witness`: run a c2sp.org/tlog-witness witness that keeps its own state."""

from __future__ import annotations

import os
from pathlib import Path

import click

_MAX_KEY_BYTES = 64 * 1024


@click.group("witness")
def witness_group() -> None:
    """Cosign checkpoints of logs you watch (C2SP tlog-witness / tlog-cosignature)."""


@witness_group.command("keygen")
@click.option("--name", required=True, help="Witness name, e.g. witness.example.com/w1.")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (mode 0600; never overwritten).",
)
def keygen(name: str, out_path: Path) -> None:
    """Create a witness key; prints its vkey (give it to the logs and their verifiers)."""
    from licensing.errors import TransparencyLogError
    from licensing.tlog.cosignature import CosignatureSigner

    try:
        signer = CosignatureSigner.generate(name)
    except TransparencyLogError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    try:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{out_path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.private_key + "\n")
    click.echo(signer.verifier().vkey)


def _read_key(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(_MAX_KEY_BYTES + 1)
    if len(data) > _MAX_KEY_BYTES:
        raise click.UsageError(f"{path} is not a witness key file")
    return data.decode("utf-8", "replace").strip()


@witness_group.command("serve")
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the witness's own state (latest cosigned checkpoint per log).",
)
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The witness private key file (from `tiergate log witness keygen`).",
)
@click.option(
    "--log-vkey",
    "log_vkeys",
    multiple=True,
    required=True,
    help="A log's checkpoint vkey (name = origin); repeat for several logs.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, type=int)
def serve(
    state_dir: Path, key_path: Path, log_vkeys: tuple[str, ...], host: str, port: int
) -> None:
    """Serve POST /add-checkpoint: verify consistency with the last cosigned checkpoint, cosign."""
    import uvicorn

    from gateway.witness.app import create_witness_app
    from gateway.witness.store import WitnessStateCorrupt, WitnessStore
    from licensing.errors import TransparencyLogError
    from licensing.tlog.cosignature import CosignatureSigner
    from licensing.tlog.note import Verifier

    try:
        signer = CosignatureSigner.from_private_key(_read_key(key_path))
    except TransparencyLogError as exc:
        raise click.BadParameter(str(exc), param_hint="--key") from None
    logs: dict[str, list[Verifier]] = {}
    for vkey in log_vkeys:
        try:
            verifier = Verifier.from_vkey(vkey.strip())
        except TransparencyLogError as exc:
            raise click.BadParameter(f"{vkey!r}: {exc}", param_hint="--log-vkey") from None
        logs.setdefault(verifier.name, []).append(verifier)
    try:
        store = WitnessStore(state_dir)
    except WitnessStateCorrupt as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"witness {signer.verifier().vkey} on http://{host}:{port}", err=True)
    app = create_witness_app(signer, logs, store)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
