"""Publish a built release folder to a gateway: register, upload what is missing, publish.

Resumable by construction: the gateway says which blobs it lacks and, per blob, how many
bytes it already holds; the client sends only the rest (none at all when a crash on the
gateway interrupted the finish of a blob whose bytes had all arrived). Blobs another org
stored are still sent: the gateway needs proof of possession, not the digest. A publish
that stops half way leaves the release pending (invisible to others); running it again
finishes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from licensing.layout import SIGNATURE_FILE
from release._paths import list_folder_files
from release.errors import ReleaseError
from release.hashing import hash_files

__all__ = ["DEFAULT_UPLOAD_CHUNK", "PublishError", "PublishResult", "publish_release_folder"]

DEFAULT_UPLOAD_CHUNK = 8 << 20
RELEASE_STATEMENT_FILE = "release.dsse.json"
TERMS_FILE = "terms.md"
MODEL_CARD_FILE = "README.md"

ProgressCallback = Callable[[int, int], None]


class PublishError(ReleaseError):
    """The gateway refused a step; ``code`` is the gateway's problem code."""

    code = "publish_failed"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code
        self.status = status


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    version: str
    status: str
    uploaded_blobs: int
    uploaded_bytes: int
    skipped_blobs: int


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        problem = response.json()
        detail, code = problem.get("detail", response.text), problem.get("code")
    except ValueError:
        detail, code = response.text[:200], None
    raise PublishError(f"{what}: {detail}", code=code, status=response.status_code)


def _tier_dirs(out_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(out_dir.iterdir()) if (p / SIGNATURE_FILE).is_file()}


def publish_release_folder(
    out_dir: str | os.PathLike[str],
    *,
    client: httpx.Client,
    chunk_size: int = DEFAULT_UPLOAD_CHUNK,
    on_progress: ProgressCallback | None = None,
) -> PublishResult:
    """Upload ``out_dir`` (as written by `build_release`) through ``client`` and publish it.

    ``client`` carries the gateway base URL and the publisher's token.
    """
    root = Path(out_dir)
    statement_path = root / RELEASE_STATEMENT_FILE
    if not statement_path.is_file():
        raise PublishError(f"{root} has no {RELEASE_STATEMENT_FILE}: build the release first")
    tiers = _tier_dirs(root)
    if not tiers:
        raise PublishError(f"{root} has no tier folders with a {SIGNATURE_FILE}")
    first = next(iter(tiers.values()))
    terms_path = root / TERMS_FILE
    body = {
        "statement": json.loads(statement_path.read_bytes()),
        "bundles": {
            name: json.loads((d / SIGNATURE_FILE).read_bytes()) for name, d in tiers.items()
        },
        "model_card": (first / MODEL_CARD_FILE).read_text("utf-8")
        if (first / MODEL_CARD_FILE).is_file()
        else "",
        "terms": terms_path.read_text("utf-8") if terms_path.is_file() else None,
    }
    created = _check(client.post("/api/releases", json=body), "registering the release")
    repo_id, version = created["repo_id"], created["version"]
    missing: list[dict[str, Any]] = created["missing"]

    # Map the missing digests to local files (hashing is what proves which file is which).
    listing = [(f"{t}/{rel}", path) for t, d in tiers.items() for rel, path in list_folder_files(d)]
    local: dict[str, Path] = {}
    if missing:
        wanted = {m["sha256"] for m in missing}
        paths = dict(listing)
        for name, digest in hash_files(listing, show_progress=False).items():
            if digest.sha256 in wanted:
                local.setdefault(digest.sha256, paths[name])
        lost = wanted - set(local)
        if lost:
            raise PublishError(f"{len(lost)} file(s) the release lists are not in {root}")
    total = sum(int(m["size"]) for m in missing)
    done = 0
    uploaded_bytes = 0
    for blob in missing:
        sha256, size = blob["sha256"], int(blob["size"])
        status = _check(client.get(f"/api/uploads/{sha256}"), f"upload status of {sha256[:12]}")
        offset = int(status["offset"])
        complete = bool(status["complete"])
        done += offset
        with local[sha256].open("rb") as handle:
            handle.seek(offset)
            # Not `offset < size`: every byte may have arrived before a crash cut the finish
            # short; then one empty chunk at the end has the gateway verify and keep them.
            while not complete:
                chunk = handle.read(min(chunk_size, size - offset))
                if not chunk and offset < size:
                    raise PublishError(f"{local[sha256]} shrank while uploading")
                response = client.patch(
                    f"/api/uploads/{sha256}",
                    content=chunk,
                    headers={
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/octet-stream",
                    },
                )
                if response.status_code == 409:  # another attempt moved on: resume from there
                    offset = int(response.headers.get("Upload-Offset", offset))
                    handle.seek(offset)
                    continue
                result = _check(response, f"uploading {local[sha256].name}")
                uploaded_bytes += len(chunk)
                done += len(chunk)
                offset = int(result["offset"])
                complete = bool(result["complete"])
                if on_progress is not None:
                    on_progress(done, total)
    published = _check(
        client.post(f"/api/releases/{repo_id}/{version}/publish"), "publishing the release"
    )
    return PublishResult(
        repo_id=repo_id,
        version=version,
        status=str(published["status"]),
        uploaded_blobs=len(missing),
        uploaded_bytes=uploaded_bytes,
        skipped_blobs=len(listing) - len(missing),
    )
