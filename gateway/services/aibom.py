"""A release's AI bill of materials (SPDX 3 and CycloneDX 1.6), served next to it.

The documents are derived, not stored: :func:`release.aibom.render_release_bom` of the signed
statement and the signed card, so anyone can regenerate and compare them. A release row never
changes its statement or card, so the rendered bytes are cached per statement digest (a
process-local cache of a pure function: replicas agree without sharing it).
The release's endorsed evaluation attestations (``evaluation_attestations.bom_evaluations``:
the publisher's own and accepted community ones) are passed as ``evaluations`` and become part
of the cache key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from gateway.db.models import Release
from gateway.errors import NotFound
from licensing.dsse import Envelope
from licensing.statements import parse_release_statement
from release.aibom import CYCLONEDX_FILE, SPDX_FILE, EvaluationResult, render_release_bom

__all__ = [
    "CYCLONEDX_FILE",
    "SPDX_FILE",
    "AIBOM_FILES",
    "AIBOM_MEDIA_TYPES",
    "AiBomNotFound",
    "aibom_document",
    "release_aibom_files",
]

AIBOM_FILES = (CYCLONEDX_FILE, SPDX_FILE)
AIBOM_MEDIA_TYPES = {
    SPDX_FILE: "application/spdx+json",
    CYCLONEDX_FILE: "application/vnd.cyclonedx+json; version=1.6",
}
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, ...], dict[str, bytes]] = OrderedDict()
_lock = threading.Lock()


class AiBomNotFound(NotFound):
    code = "aibom_not_found"
    title = "No such AI BOM document"


def release_aibom_files(
    release: Release, evaluations: Sequence[EvaluationResult] = ()
) -> dict[str, bytes]:
    """``{aibom.spdx.json: bytes, aibom.cdx.json: bytes}`` of a release."""
    key = (release.statement_digest, *sorted(r.attestation_sha256 for r in evaluations))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    payload = Envelope.from_json(release.statement_envelope.encode("utf-8")).payload
    statement = parse_release_statement(payload)
    files = render_release_bom(
        statement,
        statement_digest=release.statement_digest,
        model_card=release.model_card,
        evaluations=evaluations,
    ).files()
    with _lock:
        _cache[key] = files
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return files


def aibom_document(
    release: Release, name: str, evaluations: Sequence[EvaluationResult] = ()
) -> tuple[bytes, str]:
    """One document's bytes and media type; ``AiBomNotFound`` for another name."""
    if name not in AIBOM_MEDIA_TYPES:
        raise AiBomNotFound(f"no AI BOM document {name!r}: {', '.join(AIBOM_FILES)}")
    return release_aibom_files(release, evaluations)[name], AIBOM_MEDIA_TYPES[name]
