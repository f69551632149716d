"""C2PA Content Credentials for releases: a sidecar per tier, bound to the tier's ``model.sig``.

The weights are not touched: model_signing signs them (``model.sig``) before the gateway
sees them, and embedding a manifest in a SafeTensors or GGUF file afterwards would change
the bytes that signature and every published sha256 cover. The sidecar's hard binding
(``c2pa.hash.data``) covers ``model.sig`` byte for byte, which in turn covers every weights
file's digest; its ``org.tiergate.release`` assertion names the release, its signed
statement's digest, the signer's key and the tier's files. Derived from the release rows
on each request (a fresh signature over the same claims; nothing stored).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from gateway import __version__
from gateway.auth.principal import Principal
from gateway.errors import NotFound
from gateway.services import releases
from gateway.services.provenance import ProvenanceService
from licensing.layout import SIGNATURE_FILE

__all__ = ["RELEASE_ASSET_FORMAT", "ReleaseCredential", "TierNotFound", "release_credential"]

# What a C2PA reader is told the bound asset (model.sig, a Sigstore bundle) is.
RELEASE_ASSET_FORMAT = "application/octet-stream"
RELEASE_ASSERTION = "org.tiergate.release"


class TierNotFound(NotFound):
    code = "release_tier_not_found"
    title = "No such tier"


@dataclass(frozen=True)
class ReleaseCredential:
    manifest_id: str
    store: bytes
    bound_asset: bytes  # the tier's model.sig, verbatim


def _manifest_id(statement_digest: str, tier: str) -> str:
    seed = hashlib.sha256(f"tiergate-release-credential/{statement_digest}/{tier}".encode())
    return f"urn:c2pa:{uuid.UUID(bytes=seed.digest()[:16], version=4)}"


def release_credential(
    session: Session,
    provenance: ProvenanceService,
    viewer: Principal | None,
    repo_id: str,
    version: str,
    tier: str,
) -> ReleaseCredential:
    """The Content Credential of one tier of a release the viewer may see."""
    release = releases.find_release(session, repo_id, version, viewer=viewer)
    rows = {t.tier: t for t in releases.release_tiers(session, release)}
    row = rows.get(tier)
    if row is None:
        raise TierNotFound(f"{repo_id}@{version} has no tier {tier[:40]!r}")
    files = releases.release_files(session, release, tier)
    base = provenance.base_url
    manifest_id = _manifest_id(release.statement_digest, tier)
    when = release.published_at or release.created_at
    manifest: dict[str, Any] = {
        "label": manifest_id,
        "claim_generator_info": [{"name": "tiergate", "version": __version__}],
        "title": f"{repo_id}@{version}:{tier} {SIGNATURE_FILE}",
        "format": RELEASE_ASSET_FORMAT,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCreation",
                            "softwareAgent": {"name": repo_id, "version": f"{version}:{tier}"},
                        },
                        {
                            "action": "c2pa.published",
                            "when": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        },
                    ]
                },
            },
            {
                "label": RELEASE_ASSERTION,
                "data": {
                    "model": f"{repo_id}@{version}:{tier}",
                    "status": release.status,
                    "gated": row.gated,
                    "release_statement_digest": release.statement_digest,
                    "release_url": f"{base}/api/releases/{repo_id}/{version}",
                    "signer_key_id": release.signer_key_id,
                    "signer_key_url": f"{base}/api/releases/{repo_id}/{version}/key",
                    "tier_manifest_digest": row.manifest_digest,
                    "bound_asset": SIGNATURE_FILE,
                    "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files],
                },
            },
        ],
    }
    bundle = row.bundle.encode("utf-8")
    store = provenance.sign_bytes(manifest, bundle, RELEASE_ASSET_FORMAT)
    return ReleaseCredential(manifest_id, store, bundle)
