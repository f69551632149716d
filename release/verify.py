"""Verify a downloaded tier folder: its `model.sig` against the publisher key, then every file.

Fails closed: a bad signature, a file whose sha256 differs, a missing file or an extra file
each raise :class:`TierVerificationError` naming the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from licensing.errors import LicensingError
from licensing.keys import PublicKey
from licensing.layout import SIGNATURE_FILE
from licensing.sigstore_bundle import ModelManifest, verify_model_bundle_manifest
from release._paths import list_folder_files
from release.errors import ReleaseError
from release.hashing import hash_files

__all__ = ["TierVerificationError", "VerifiedTier", "verify_tier"]


class TierVerificationError(ReleaseError):
    code = "tier_verification_failed"

    def __init__(
        self,
        message: str,
        *,
        missing: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
        mismatched: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.missing, self.extra, self.mismatched = missing, extra, mismatched


@dataclass(frozen=True)
class VerifiedTier:
    directory: Path
    manifest: ModelManifest
    files: int
    total_bytes: int
    ignored: tuple[str, ...]


def verify_tier(
    tier_dir: str | os.PathLike[str],
    public_key: PublicKey,
    *,
    signature_file: str | os.PathLike[str] | None = None,
    ignore_unsigned: tuple[str, ...] = (),
    show_progress: bool | None = None,
) -> VerifiedTier:
    """Check the tier's signature and that the folder holds exactly the signed files.

    ``ignore_unsigned`` names extra relative paths tolerated beside the signed ones (e.g.
    the cache files a hub client leaves); everything else unsigned is an error.
    """
    root = Path(tier_dir)
    sig_path = Path(signature_file) if signature_file is not None else root / SIGNATURE_FILE
    try:
        bundle = sig_path.read_bytes()
    except OSError as exc:
        raise TierVerificationError(
            f"cannot read the signature {sig_path}: {exc.strerror}"
        ) from exc
    try:
        manifest = verify_model_bundle_manifest(bundle, public_key)
    except LicensingError as exc:
        raise TierVerificationError(f"{sig_path.name}: {exc.message}") from exc
    signed = {r.name: r.sha256 for r in manifest.resources}
    skip = {SIGNATURE_FILE, *manifest.ignore_paths, *ignore_unsigned}
    on_disk = dict(list_folder_files(root, ignore=tuple(skip)))
    missing = tuple(sorted(set(signed) - set(on_disk)))
    extra = tuple(sorted(set(on_disk) - set(signed)))
    digests = hash_files(
        [(name, on_disk[name]) for name in sorted(set(signed) & set(on_disk))],
        show_progress=show_progress,
    )
    mismatched = tuple(sorted(n for n, d in digests.items() if d.sha256 != signed[n]))
    if missing or extra or mismatched:
        parts = []
        for label, names in (("missing", missing), ("unsigned", extra), ("altered", mismatched)):
            if names:
                shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise TierVerificationError(
            f"{root} does not match its signature ({'; '.join(parts)})",
            missing=missing,
            extra=extra,
            mismatched=mismatched,
        )
    return VerifiedTier(
        directory=root,
        manifest=manifest,
        files=len(signed),
        total_bytes=sum(d.size for d in digests.values()),
        ignored=tuple(sorted(skip)),
    )
