"""`tiergate pull`: download a whole tier, resumably, then verify its signature and every file.

Files land in ``DIR.partial`` and the folder is renamed to ``DIR`` only after `verify_tier`
passes, so a folder named ``DIR`` is always complete and verified. Interrupted downloads
resume from the partial files with ``Range`` + ``If-Range`` (the sha256 ETag).
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli._client import api_client, gateway_options, parse_release_ref
from gateway.cli._pull import pull_tier

__all__ = ["command", "pull_tier"]


@click.command(name="pull")
@click.argument("ref", metavar="ORG/NAME[@VERSION]")
@click.option("--tier", default="open", show_default=True, help="Tier: open or optimized.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Pin the publisher's public key (PEM) instead of fetching it from the gateway.",
)
@click.option(
    "--force", is_flag=True, help="Replace a non-empty --out folder once the new copy verifies."
)
@click.option(
    "--original-card",
    is_flag=True,
    help="Fetch README.md and model.sig as first signed, not the publisher's latest card "
    "revision (the card with attested evaluation results).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print what was pulled as JSON.")
@gateway_options
def command(
    ref: str,
    tier: str,
    out_dir: Path,
    key_path: Path | None,
    force: bool,
    original_card: bool,
    quiet: bool,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Download a release tier into --out, resuming, then verify signature and hashes.

    When the publisher signed a card revision (`tiergate release card`), the tier comes
    with that revision's README.md and model.sig; both are checked against the release's
    key and the weights' digests against the signed release statement.

    \b
    Examples:
      tiergate pull acme/tiny --out ./tiny                      # the open tier, newest version
      tiergate pull acme/tiny@1.0.0 --tier optimized --out ./tiny-int8   # needs a grant
    """
    import time

    from tqdm import tqdm

    repo_id, version = parse_release_ref(ref)
    started = time.monotonic()
    totals = {"bytes": 0}
    with api_client(gateway, token, timeout=300.0) as http:
        # One progress library everywhere (tqdm, as hashing and publishing): bytes, speed, ETA.
        bar = (
            None
            if quiet or as_json
            else tqdm(
                total=0, desc=f"{repo_id} [{tier}]", unit="B", unit_scale=True, unit_divisor=1024
            )
        )

        def show(done: int, total: int) -> None:
            totals["bytes"] = total
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        try:
            pulled = pull_tier(
                http,
                repo_id,
                version,
                tier,
                out_dir,
                key_path=key_path,
                on_progress=show,
                force=force,
                original_card=original_card,
            )
        finally:
            if bar is not None:
                bar.close()
    seconds = time.monotonic() - started
    if as_json:
        import json

        click.echo(
            json.dumps(
                {
                    "repo_id": repo_id,
                    "tier": tier,
                    "path": str(pulled),
                    "bytes": totals["bytes"],
                    "seconds": round(seconds, 3),
                    "verified": True,
                },
                indent=2,
            )
        )
        return
    click.echo(f"{repo_id} [{tier}] -> {pulled}: signature and every sha256 verified")
