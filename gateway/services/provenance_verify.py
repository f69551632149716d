"""Verify a Content Credential with no gateway in the loop: the manifest, its text, its log proof.

What a detector holds after resolving a text (the manifest store, the match with its inclusion
proof and signed checkpoint) is checked here against two things they trust out of band: the C2PA
root certificate and the log's note verifier key. Four checks, each with its own typed error:

1. the manifest store parses and its signature verifies (c2pa-rs): :class:`ManifestInvalid`;
2. its signer chains to the root given: :class:`ManifestUntrusted`;
3. its ``c2pa.hash.data`` hard binding matches the text (the C2PA text wrapper, when the text
   carries one, is the manifest and is removed first): :class:`HardBindingMismatch`;
4. the log proof: the checkpoint note is signed by the log key (:class:`CheckpointUnverified`),
   the proof is for the log index the signed manifest names (:class:`LogProofMismatch`), and its
   audit path leads from the leaf to the checkpoint's root (:class:`LogProofInvalid`).

Input problems are typed too: no manifest anywhere (:class:`ManifestMissing`), a wrapper that
does not decode (:class:`C2paWrapperInvalid`), no proof or one of no known shape
(:class:`LogProofMissing`). Imports only c2pa, c2pa-text and :mod:`licensing.tlog` (no database,
no web stack), so ``tiergate provenance verify`` stays a small, offline command. The log proof
(check 4, its parsing and its four errors) lives in :mod:`gateway.services.provenance_log_proof`
and is re-exported here.

Error classes (all ``ValidationFailed`` subclasses, 422)::

    C2paWrapperInvalid     c2pa_wrapper_invalid
    ManifestMissing        c2pa_manifest_missing
    ManifestInvalid        c2pa_manifest_invalid
    ManifestUntrusted      c2pa_manifest_untrusted
    HardBindingMismatch    c2pa_hard_binding_mismatch
    LogProofMissing        c2pa_log_proof_missing
    CheckpointUnverified   c2pa_checkpoint_unverified
    LogProofMismatch       c2pa_log_proof_mismatch
    LogProofInvalid        c2pa_log_proof_invalid
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import c2pa
import c2pa_text

from gateway.errors import ValidationFailed
from gateway.services.provenance_log_proof import (
    CheckpointUnverified,
    LogProof,
    LogProofInvalid,
    LogProofMismatch,
    LogProofMissing,
    parse_log_proof,
    proof_int,
    verify_log_proof,
)

__all__ = [
    "GENERATION_ASSERTION",
    "C2paWrapperInvalid",
    "CheckpointUnverified",
    "CredentialClaims",
    "HardBindingMismatch",
    "LogProof",
    "LogProofInvalid",
    "LogProofMismatch",
    "LogProofMissing",
    "ManifestInvalid",
    "ManifestMissing",
    "ManifestUntrusted",
    "OfflineVerification",
    "VerifiedCredential",
    "extract_from_text",
    "parse_log_proof",
    "read_manifest",
    "verify_credential",
    "verify_offline",
    "verify_text_credential",
]

GENERATION_ASSERTION = "org.tiergate.generation"
_ZWNBSP = "\ufeff"


class C2paWrapperInvalid(ValidationFailed):
    """Text carries a C2PA text wrapper that does not decode (garbage or truncated)."""

    code = "c2pa_wrapper_invalid"
    title = "Invalid C2PA text wrapper"


class ManifestMissing(ValidationFailed):
    """Neither a manifest store was given nor does the text carry one in a C2PA wrapper."""

    code = "c2pa_manifest_missing"
    title = "No C2PA manifest to verify"


class ManifestInvalid(ValidationFailed):
    """A manifest store that does not parse or whose signature does not verify."""

    code = "c2pa_manifest_invalid"
    title = "Invalid C2PA manifest"


class ManifestUntrusted(ValidationFailed):
    """A manifest signed by a certificate that does not chain to the trust anchor given."""

    code = "c2pa_manifest_untrusted"
    title = "C2PA manifest signer not trusted"


class HardBindingMismatch(ValidationFailed):
    """The text is not the text the manifest was signed over (edited, or another text)."""

    code = "c2pa_hard_binding_mismatch"
    title = "Text does not match its Content Credential"


# ---------------------------------------------------------------- the text wrapper (A.8)


def extract_from_text(text: str) -> tuple[bytes | None, str]:
    """(manifest store, the text without its wrapper); (None, text) when there is none.

    A wrapper prefix followed by variation selectors that do not decode is refused, typed.
    """
    try:
        info = c2pa_text.find_wrapper_info(text)
    except ValueError as exc:  # two wrappers
        raise C2paWrapperInvalid(str(exc)) from exc
    if info is None:
        at = text.find(_ZWNBSP)
        if at >= 0 and at + 1 < len(text) and _is_selector(text[at + 1]):
            raise C2paWrapperInvalid(
                "the text carries a C2PA text wrapper that does not decode "
                "(bad magic, version or length, or truncated)"
            )
        return None, text
    store, start_byte, length_byte = info
    raw = text.encode("utf-8")
    clean = raw[:start_byte] + raw[start_byte + length_byte :]
    return bytes(store), clean.decode("utf-8")


def _is_selector(char: str) -> bool:
    point = ord(char)
    return 0xFE00 <= point <= 0xFE0F or 0xE0100 <= point <= 0xE01EF


# ---------------------------------------------------------------- the manifest (c2pa-rs)


@dataclass(frozen=True)
class VerifiedCredential:
    manifest_id: str
    state: str  # c2pa-rs validation state: "Trusted" when it chains to the anchor given
    manifest: dict[str, Any]

    def assertion(self, label: str) -> dict[str, Any]:
        for item in self.manifest.get("assertions", []):
            if item.get("label") == label:
                data: dict[str, Any] = item.get("data", {})
                return data
        raise ManifestInvalid(f"the manifest has no {label} assertion")

    @property
    def signer(self) -> str:
        info = self.manifest.get("signature_info") or {}
        return str(info.get("common_name") or info.get("issuer") or "unknown")

    @property
    def signed_at(self) -> str | None:
        info = self.manifest.get("signature_info") or {}
        when = info.get("time")
        return str(when) if when else None


def verify_text_credential(store: bytes, text: str, *, trust_anchor: bytes) -> VerifiedCredential:
    """Verify a sidecar store against ``text`` with c2pa-rs: signature, chain, hard binding."""
    return verify_credential(store, text.encode("utf-8"), "text/plain", trust_anchor=trust_anchor)


def verify_credential(
    store: bytes, asset: bytes, media_type: str, *, trust_anchor: bytes
) -> VerifiedCredential:
    """Verify a sidecar store against the asset it binds (``media_type``) with c2pa-rs."""
    try:
        anchor = trust_anchor.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ManifestUntrusted("the trust anchor is not a PEM certificate") from exc
    settings = c2pa.Settings.from_dict(
        {"trust": {"trust_anchors": anchor}, "verify": {"verify_trust": True}}
    )
    context = c2pa.Context(settings)
    try:
        reader = c2pa.Reader(media_type, io.BytesIO(asset), store, context)
        report = json.loads(reader.json())
    except c2pa.C2paError as exc:
        raise ManifestInvalid(f"the manifest store does not verify: {exc}") from exc
    finally:
        context.close()
    active = report.get("active_manifest")
    manifest = report.get("manifests", {}).get(active)
    if not active or manifest is None:
        raise ManifestInvalid("the manifest store has no active manifest")
    failures = report.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    codes = {f.get("code") for f in failures}
    if "assertion.dataHash.mismatch" in codes:
        raise HardBindingMismatch("the content is not what this Content Credential signs")
    if codes & {"signingCredential.untrusted", "signingCredential.invalid"}:
        raise ManifestUntrusted("the manifest's signer does not chain to the trust anchor given")
    if failures or report.get("validation_state") != "Trusted":
        raise ManifestInvalid(f"the manifest does not validate: {sorted(map(str, codes))}")
    return VerifiedCredential(active, str(report["validation_state"]), manifest)


def read_manifest(store: bytes) -> VerifiedCredential:
    """The active manifest of ``store`` read WITHOUT checking the text or the chain (to show
    what it claims); ``state`` is c2pa-rs's verdict without a trust anchor or the asset."""
    try:
        reader = c2pa.Reader("text/plain", io.BytesIO(b""), store)
        report = json.loads(reader.json())
    except c2pa.C2paError as exc:
        raise ManifestInvalid(f"the manifest store does not parse: {exc}") from exc
    active = report.get("active_manifest")
    manifest = report.get("manifests", {}).get(active)
    if not active or manifest is None:
        raise ManifestInvalid("the manifest store has no active manifest")
    return VerifiedCredential(active, "Unchecked", manifest)


# ---------------------------------------------------------------- all together


@dataclass(frozen=True)
class CredentialClaims:
    """What a generated text's Content Credential says: who signed it, for which model,
    release, call and choice, where the call is logged and when it was made."""

    manifest_id: str
    signer: str
    model: str
    release_statement_digest: str | None
    call_id: str
    choice_index: int
    log_index: int
    created: str | None


@dataclass(frozen=True)
class OfflineVerification(CredentialClaims):
    """What was verified, for a person (``checks``) and for a program (the fields)."""

    text_source: str  # "wrapper" (the store came embedded in the text) or "sidecar"
    checkpoint_origin: str | None
    checkpoint_size: int | None
    entry_checked: bool
    checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": True,
            "manifest_id": self.manifest_id,
            "signer": self.signer,
            "model": self.model,
            "release_statement_digest": self.release_statement_digest,
            "call_id": self.call_id,
            "choice_index": self.choice_index,
            "log_index": self.log_index,
            "created": self.created,
            "manifest_source": self.text_source,
            "checkpoint": (
                None
                if self.checkpoint_origin is None
                else {"origin": self.checkpoint_origin, "size": self.checkpoint_size}
            ),
            "log_entry_checked": self.entry_checked,
            "checks": list(self.checks),
        }


def _created(verified: VerifiedCredential) -> str | None:
    try:
        actions = verified.assertion("c2pa.actions.v2").get("actions", [])
    except ManifestInvalid:
        return None
    for action in actions:
        if action.get("action") == "c2pa.created" and action.get("when"):
            return str(action["when"])
    return None


def verify_offline(
    text: str,
    *,
    store: bytes | None,
    proof: LogProof | None,
    trust_anchor: bytes,
    log_vkey: str | None,
) -> OfflineVerification:
    """Run every check; the first that fails raises its typed error.

    ``proof`` None (with ``log_vkey`` None) checks the manifest alone; the caller decides
    whether that is enough (the CLI requires a proof unless told ``--no-log``).
    """
    embedded, clean = extract_from_text(text)
    source = "sidecar"
    if store is None:
        if embedded is None:
            raise ManifestMissing(
                "the text carries no C2PA wrapper; pass the manifest store (--manifest)"
            )
        store, source = embedded, "wrapper"
    verified = verify_text_credential(store, clean, trust_anchor=trust_anchor)
    generation = verified.assertion(GENERATION_ASSERTION)
    checks = [
        f"manifest {verified.manifest_id} signature verifies (signed by {verified.signer})",
        "the signing certificate chains to the root given",
        f"the hard binding (c2pa.hash.data) matches the text ({len(clean.encode())} bytes)",
    ]
    try:
        log_index = proof_int(generation.get("log_index"), "log_index")
        call_id = str(generation["call_id"])
        choice = proof_int(generation.get("choice_index"), "choice_index")
        model = str(generation["model"])
    except (KeyError, LogProofMissing) as exc:
        raise ManifestInvalid(f"the manifest's {GENERATION_ASSERTION} is incomplete") from exc
    checkpoint = None
    if proof is not None:
        if log_vkey is None:
            raise CheckpointUnverified("a log proof needs the log's verifier key to check it")
        checkpoint, log_checks = verify_log_proof(
            proof, log_index=log_index, call_id=call_id, log_vkey=log_vkey
        )
        checks += log_checks
    return OfflineVerification(
        manifest_id=verified.manifest_id,
        signer=verified.signer,
        model=model,
        release_statement_digest=generation.get("release_statement_digest"),
        call_id=call_id,
        choice_index=choice,
        log_index=log_index,
        created=_created(verified),
        text_source=source,
        checkpoint_origin=None if checkpoint is None else checkpoint.origin,
        checkpoint_size=None if checkpoint is None else checkpoint.size,
        entry_checked=proof is not None and proof.entry is not None,
        checks=checks,
    )
