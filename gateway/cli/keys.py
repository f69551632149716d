"""`tiergate keys`: create signing keys and register them with a gateway."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli._client import api_client, call, gateway_options

# licensing.keys pulls in `cryptography`; it is imported inside the commands so that
# `tiergate --help` and other groups do not pay for it.

KEY_TYPE_CHOICES = ("ecdsa-p256", "ed25519")


@click.group(name="keys")
def group() -> None:
    """Generate and register signing keys."""


@group.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to write (PEM, mode 0600). The public key goes to <stem>.pub.pem.",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice(KEY_TYPE_CHOICES),
    default="ecdsa-p256",
    show_default=True,
    help="ecdsa-p256 signs releases and model_signing bundles; ed25519 suits attestations.",
)
@click.option("--force", is_flag=True, help="Replace existing key files.")
def generate(out: Path, key_type: str, force: bool) -> None:
    """Generate a key pair and print its key id."""
    from licensing.errors import KeyExistsError
    from licensing.keys import PrivateKey, save_private_key, save_public_key

    public_path = public_key_path(out)
    if not force:
        # Check both before writing either, so a refusal never leaves half a key pair behind.
        for path in (out, public_path):
            if path.exists() or path.is_symlink():
                raise KeyExistsError(f"{path} exists; pass --force to replace it")
    key = PrivateKey.generate("ed25519" if key_type == "ed25519" else "ecdsa-p256")
    save_private_key(key, out, overwrite=force)
    save_public_key(key.public_key, public_path, overwrite=force)
    click.echo(f"private key: {out}", err=True)
    click.echo(f"public key:  {public_path}", err=True)
    click.echo(key.key_id)


def public_key_path(private_path: Path) -> Path:
    """``dir/name.pem`` -> ``dir/name.pub.pem`` (the public half lives beside the private key)."""
    return private_path.with_name(f"{private_path.stem}.pub.pem")


@group.command("register")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@gateway_options
def register(public_key: Path, name: str, gateway: str, token: str | None) -> None:
    """Bind PUBLIC_KEY (PEM) to your account at the gateway; prints its key id.

    Publishers' keys sign their org's releases; developers' keys sign usage attestations.
    """
    from licensing.keys import load_public_key

    key = load_public_key(public_key)  # fail here, not at the server, on a bad file
    with api_client(gateway, token) as client:
        body = call(client, "POST", "/api/keys", json={"pem": key.to_pem().decode(), "name": name})
    scope = f" for org {body['org']}" if body.get("org") else ""
    click.echo(f"registered {body['key_type']} key{scope}", err=True)
    click.echo(body["key_id"])
