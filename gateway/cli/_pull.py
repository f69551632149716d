"""Download a whole tier, resumably, then verify its signature and every file.

Files land in ``DIR.partial`` and the folder is renamed to ``DIR`` only after `verify_tier`
passes, so a folder named ``DIR`` is always complete and verified. Interrupted downloads
resume from the partial files with ``Range`` + ``If-Range`` (the sha256 ETag). Shared by
`tiergate pull` and `tiergate engine serve`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from gateway.cli._client import (
    GatewayRequestError,
    call,
    raise_for_problem,
)
from licensing.layout import SIGNATURE_FILE

MODEL_CARD_FILE = "README.md"

__all__ = ["pull_tier", "release_public_key"]

_CHUNK = 1 << 20
Progress = Callable[[int], None]


def _safe_target(root: Path, rel: str) -> Path:
    """A file path under ``root`` for a server-given name; anything escaping it is refused."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise GatewayRequestError(
            f"the gateway listed an unsafe file name {rel!r}", code="unsafe_path", status=0
        )
    return root.joinpath(*parts)


def _source_url(http: httpx.Client, repo_id: str, version: str, tier: str, rel: str,
                gated: bool, revision: str | None = None) -> str:  # fmt: skip
    if revision is not None:  # a card revision's README.md, served from its own commit
        return f"/{repo_id}/resolve/{quote(revision, safe='')}/{quote(rel)}"
    if not gated:
        return f"/{repo_id}/resolve/{quote(version + '-' + tier, safe='')}/{quote(rel)}"
    link = call(http, "POST", "/api/links", what=f"getting a link for {rel}",
        json={"repo_id": repo_id, "version": version, "tier": tier, "path": rel},
    )  # fmt: skip
    return str(link["url"])


def _download(
    http: httpx.Client, url: str, target: Path, *, size: int, sha256: str, progress: Progress
) -> None:
    have = target.stat().st_size if target.exists() else 0
    if have > size:
        target.unlink()
        have = 0
    if have == size:
        progress(size)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have else {}
    try:
        with http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if response.status_code not in (200, 206):
                response.read()

                raise_for_problem(response, f"downloading {target.name}")
            mode = "ab" if response.status_code == 206 else "wb"
            progress(have if mode == "ab" else 0)
            with target.open(mode) as handle:
                for chunk in response.iter_bytes(_CHUNK):
                    handle.write(chunk)
                    progress(len(chunk))
    except httpx.TransportError as exc:
        raise GatewayRequestError(
            f"downloading {target.name} was interrupted ({exc}); run the same command again "
            "to resume",
            code="interrupted",
            status=0,
        ) from exc
    if target.stat().st_size != size:
        raise GatewayRequestError(
            f"{target.name}: got {target.stat().st_size} bytes, expected {size}; run again to "
            "resume",
            code="size_mismatch",
            status=0,
        )


def release_public_key(
    http: httpx.Client, repo_id: str, version: str, key_path: Path | None
) -> Any:
    from licensing.keys import PublicKey, load_public_key

    if key_path is not None:
        return load_public_key(key_path)
    body = call(
        http, "GET", f"/api/releases/{repo_id}/{version}/key", what="fetching the signer key"
    )
    return PublicKey.from_pem(str(body["pem"]).encode("ascii"))


def _gate_refusal(http: httpx.Client, repo_id: str, version: str, tier: str) -> str:
    """What to tell someone the gate refused: their pending request, or how to ask."""
    try:
        requests = call(http, "GET", "/api/access/requests")
    except GatewayRequestError:
        requests = []
    for row in requests:
        if (row["repo_id"], row["version"], row["tier"], row["status"]) == (
            repo_id,
            version,
            tier,
            "pending",
        ):
            return (
                f"your access request {row['id']} for {repo_id}@{version}:{tier} is pending the "
                "publisher's review; `tiergate access status` shows when it is decided"
            )
    return (
        f"{repo_id}@{version}:{tier} is gated and you hold no active grant; ask with "
        f"`tiergate access request {repo_id}@{version} --tier {tier} --key YOUR_KEY.pem`"
    )


def pull_tier(
    http: httpx.Client,
    repo_id: str,
    version: str | None,
    tier: str,
    out: Path,
    *,
    key_path: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    force: bool = False,
    original_card: bool = False,
) -> Path:
    """Download and verify one tier into ``out``; returns ``out``.

    With ``force`` an existing ``out`` is replaced, but only once the new copy verified.
    When the publisher signed a card revision, its ``README.md`` and ``model.sig`` are
    fetched instead of the originals (unless ``original_card``) and checked as well: the
    revision and the bundle signed by the release's key, every other digest the release
    statement's, the card the one the revision signs.
    """
    from release.verify import TierVerificationError, verify_tier

    if out.exists() and not out.is_dir():
        raise GatewayRequestError(
            f"{out} exists and is not a folder", code="output_exists", status=0
        )
    if out.exists() and any(out.iterdir()) and not force:
        raise GatewayRequestError(
            f"{out} exists and is not empty; pass --force to replace it once the new copy verifies",
            code="output_exists",
            status=0,
        )
    path = f"/api/releases/{repo_id}" + (f"/{version}" if version else "")
    release = call(http, "GET", path, what=f"looking up {repo_id}")
    version = str(release["version"])
    tiers = {t["name"]: t for t in release["tiers"]}
    if tier not in tiers:
        raise GatewayRequestError(
            f"{repo_id}@{version} has no tier {tier!r} (tiers: {', '.join(sorted(tiers))})",
            code="tier_not_found",
            status=0,
        )
    info = tiers[tier]
    gated = bool(info["gated"])
    files = [(f["path"], int(f["size"]), f["sha256"]) for f in info["files"]]
    card = None if original_card else latest_card_revision(http, repo_id, version)
    card_commit = None
    if card is not None:
        card_commit = str(card["commits"][tier])
        size = len(str(card["card"]).encode("utf-8"))
        files = [
            (rel, size, str(card["card_sha256"])) if rel == MODEL_CARD_FILE else (rel, n, sha)
            for rel, n, sha in files
        ]
    partial = out.with_name(out.name + ".partial")
    # Created only once the gate let the first file through: a refusal leaves nothing behind.
    created_partial = not partial.exists()
    total = sum(size for _, size, _ in files)
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, total)

    try:
        for rel, size, sha256 in files:
            try:
                from_card = card_commit if rel == MODEL_CARD_FILE else None
                url = _source_url(http, repo_id, version, tier, rel, gated, from_card)
            except GatewayRequestError as exc:
                if exc.code in ("grant_required", "gated_repo"):
                    raise GatewayRequestError(
                        _gate_refusal(http, repo_id, version, tier),
                        code=exc.code,
                        status=exc.status,
                    ) from exc
                raise
            target = _safe_target(partial, rel)
            _download(http, url, target, size=size, sha256=sha256, progress=progress)
    except BaseException:
        if created_partial and partial.is_dir() and not any(partial.rglob("*")):
            partial.rmdir()
        raise
    partial.mkdir(parents=True, exist_ok=True)
    # model.sig is the tier's bundle: small, fetched whole every time.
    revision = quote(card_commit or (version + "-" + tier), safe="")
    signature = http.get(f"/{repo_id}/resolve/{revision}/{SIGNATURE_FILE}")
    if signature.status_code != 200:
        raise_for_problem(signature, f"downloading {SIGNATURE_FILE}")
    (partial / SIGNATURE_FILE).write_bytes(signature.content)
    key = release_public_key(http, repo_id, version, key_path)
    if card is not None:
        check_card_revision(release, card, tier, signature.content, key)
    try:
        verify_tier(partial, key, show_progress=False)
    except TierVerificationError as exc:
        # Drop what is wrong so a rerun fetches it again; the folder keeps its .partial name.
        for name in (*exc.mismatched, *exc.extra):
            _safe_target(partial, name).unlink(missing_ok=True)
        raise
    _replace_folder(partial, out)
    return out


def latest_card_revision(http: httpx.Client, repo_id: str, version: str) -> dict[str, Any] | None:
    """The latest card revision of ``repo_id@version`` with its card, or None."""
    path = f"/api/releases/{repo_id}/{version}/card-revisions"
    try:
        listed = call(http, "GET", path, what="looking up card revisions")
    except GatewayRequestError as exc:
        if exc.status == 404:  # a gateway from before card revisions: the signed card
            return None
        raise
    if not listed:
        return None
    number = max(int(row["revision"]) for row in listed)
    found: dict[str, Any] = call(http, "GET", f"{path}/{number}", what="reading the card revision")
    return found


def check_card_revision(
    release: dict[str, Any], card: dict[str, Any], tier: str, bundle: bytes, key: Any
) -> None:
    """The revision and the release statement verify under ``key``; the revision names this
    release and this card; the tier's bundle changes nothing but the card's digest. Files on
    disk are checked against the bundle afterwards (``verify_tier``)."""
    import json

    from licensing.card_revision import verify_card_revision
    from licensing.errors import LicensingError
    from licensing.statements import verify_release_statement
    from release.card_revision import check_revised_bundle
    from release.errors import ReleaseError

    def refuse(message: str) -> GatewayRequestError:
        return GatewayRequestError(message, code="card_revision_unverified", status=0)

    try:
        statement = verify_release_statement(json.dumps(release["statement"]).encode(), [key])
        verified = verify_card_revision(json.dumps(card["statement"]).encode(), [key])
        if verified.revision.release_digest != statement.release_digest:
            raise refuse("the card revision names another release statement")
        if verified.revision.card_sha256 != card["card_sha256"]:
            raise refuse("the gateway's card digest is not the one the revision signs")
        manifest = check_revised_bundle(
            statement.release, tier, bundle, key, verified.revision.card_sha256
        )
        if manifest != verified.revision.tiers.get(tier):
            raise refuse(f"{SIGNATURE_FILE} is not the bundle the card revision signs")
    except (LicensingError, ReleaseError) as exc:
        raise refuse(f"card revision {card.get('revision')}: {exc.message}") from exc


def _replace_folder(new: Path, out: Path) -> None:
    """Put the verified ``new`` at ``out``; an old ``out`` is moved aside first, then removed."""
    import shutil

    old = None
    if out.exists():
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
