"""`tiergate release card`: put a release's endorsed evaluation results on its card.

Fetches the signed card and the attestations the publisher endorses (this version's and the
earlier versions' of the repository), renders the card revision locally
(``release.card_revision``), signs it with the publisher key, and uploads it; the gateway
re-renders it and refuses any byte that differs.
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import httpx

from gateway.cli._client import (
    api_client,
    call,
    gateway_options,
    iter_pages,
    parse_release_ref,
    raise_for_problem,
)

__all__ = ["COMMANDS"]

_ENDORSED = ("publisher", "accepted")


def _statement(body: dict[str, Any]) -> Any:
    from licensing.dsse import Envelope
    from licensing.statements import parse_release_statement

    # The gateway verified it against the org's keys when the release was registered; the
    # revision is checked again there, so a lie here only gets the upload refused.
    return parse_release_statement(Envelope.from_dict(body["statement"]).payload)


def _endorsed(http: httpx.Client, repo_id: str, version: str) -> tuple[bytes, ...]:
    base = f"/api/releases/{repo_id}/{version}/evaluations"
    rows = call(http, "GET", base, what=f"listing the evaluations of {repo_id}@{version}")
    out = []
    for row in rows:
        if row["status"] in _ENDORSED:
            got = http.get(f"{base}/{row['id']}")
            raise_for_problem(got, f"fetching attestation {row['id']}")
            out.append(got.content)
    return tuple(out)


def _attested(http: httpx.Client, body: dict[str, Any]) -> Any:
    from release.card_revision import AttestedRelease

    repo_id, version = body["repo_id"], body["version"]
    return AttestedRelease(
        _statement(body), body["statement_digest"], _endorsed(http, repo_id, version)
    )


def _earlier(http: httpx.Client, body: dict[str, Any]) -> list[Any]:
    """Published versions of the repository published no later than this one."""
    repo_id = body["repo_id"]
    org, name = repo_id.split("/")
    mine = datetime.fromisoformat(body["published_at"])
    out = []
    rows = iter_pages(http, "/api/releases", params={"author": org, "search": name, "limit": 100})
    for row in rows:
        if row["repo_id"] != repo_id or row["version"] == body["version"]:
            continue
        if row["status"] != "published" or row["published_at"] is None:
            continue
        if datetime.fromisoformat(row["published_at"]) > mine:
            continue
        other = call(http, "GET", f"/api/releases/{repo_id}/{row['version']}")
        attested = _attested(http, other)
        if attested.attestations:
            out.append(attested)
    return out


@click.command("card")
@click.argument("ref", metavar="ORG/NAME@VERSION")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The publisher's private key (PEM), registered for the org.",
)
@click.option("--dry-run", is_flag=True, help="Print the new card and sign nothing.")
@click.option(
    "--no-earlier-versions",
    is_flag=True,
    help="Leave the other versions' results out of the cross-version table.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@gateway_options
def card(
    ref: str,
    key_path: Path,
    dry_run: bool,
    no_earlier_versions: bool,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Publish a signed card revision of ORG/NAME@VERSION with its endorsed evaluations.

    A release's README.md is signed before any evaluation of it exists. This command
    re-renders that card with the results of the evaluation attestations you endorse (your
    own, and community ones you accepted with `tiergate eval`): `model-index` in the front
    matter, a table of every score with its 95% interval, each optimized tier against
    `open` on the same task, and the earlier versions' results. It signs the card and each
    tier's model.sig (the weights' digests unchanged) with --key and uploads the revision.

    The gateway re-renders the card from the same inputs and refuses any difference. Hub
    clients then get the revised card on `main` and the tier branches (`optimized`); the
    version tags (`1.0.0`, `1.0.0-optimized`) keep the card as first signed, and
    `tiergate pull` verifies whichever it downloads.

    \b
    Examples:
      tiergate release card acme/tiny@1.0.0 --key publisher.pem --dry-run
      tiergate release card acme/tiny@1.0.0 --key publisher.pem
    """
    from gateway.db.timeutil import utcnow
    from licensing.keys import load_private_key
    from release.card_revision import build_card_revision

    repo_id, version = parse_release_ref(ref)
    if version is None:
        raise click.BadParameter("name the version: ORG/NAME@VERSION")
    key = load_private_key(key_path)
    path = f"/api/releases/{repo_id}/{version}"
    with api_client(gateway, token, timeout=120.0) as http:
        body = call(http, "GET", path, what=f"reading {ref}")
        current = _attested(http, body)
        others = [] if no_earlier_versions else _earlier(http, body)
        revisions = call(http, "GET", f"{path}/card-revisions", what="listing card revisions")
        number = 1 + max((int(r["revision"]) for r in revisions), default=0)
        built = build_card_revision(
            original_card=body["model_card"],
            release=current,
            others=others,
            revision=number,
            key=key,
            now=utcnow(),
        )
        new_card = built.card.decode("utf-8")
        shown = len(built.revision.attestations)
        if dry_run:
            if as_json:
                click.echo(json.dumps({"revision": number, "dry_run": True, "card": new_card}))
                return
            before = body["model_card"].splitlines(keepends=True)
            diff = difflib.unified_diff(
                before, new_card.splitlines(keepends=True), "README.md (signed)", "README.md (new)"
            )
            click.echo("".join(diff) or "(no change)", err=True)
            click.echo(new_card, nl=False)
            return
        upload = {
            "statement": json.loads(built.envelope),
            "card": new_card,
            "bundles": {tier: json.loads(b) for tier, b in built.bundles.items()},
        }
        stored = call(
            http, "POST", f"{path}/card-revisions", what="uploading the card revision", json=upload
        )
    if as_json:
        click.echo(json.dumps(stored, indent=2))
        return
    click.echo(
        f"{repo_id}@{version}: card revision {stored['revision']} published, showing {shown} "
        f"attestation(s); README.md sha256:{stored['card_sha256']}"
    )
    click.echo(f"statement sha256:{stored['digest']} (log entry {stored['log_index']})")
    click.echo("served on `main` and the tier branches; version tags keep the original card")


COMMANDS = (card,)
