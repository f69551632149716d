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
no web stack), so ``tiergate provenance verify`` stays a small, offline command.

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

import binascii
import hmac
import io
import json
from dataclasses import dataclass, field
from typing import Any

import c2pa
import c2pa_text

from gateway.errors import ValidationFailed
from licensing.errors import TransparencyLogError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.merkle import leaf_hash, verify_inclusion
from licensing.tlog.note import Verifier

__all__ = [
    "GENERATION_ASSERTION",
    "C2paWrapperInvalid",
    "CheckpointUnverified",
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
_MAX_PATH = 64  # a tree of 2**64 leaves has no longer audit path


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


class LogProofMissing(ValidationFailed):
    """No log inclusion proof, or a document that is none of the shapes the gateway returns."""

    code = "c2pa_log_proof_missing"
    title = "No log inclusion proof"


class CheckpointUnverified(ValidationFailed):
    """The proof's checkpoint note is not signed by the log key given (or does not parse)."""

    code = "c2pa_checkpoint_unverified"
    title = "Checkpoint signature does not verify"


class LogProofMismatch(ValidationFailed):
    """A valid-looking proof for another log entry than the one the manifest names."""

    code = "c2pa_log_proof_mismatch"
    title = "Log proof is for another entry"


class LogProofInvalid(ValidationFailed):
    """The audit path does not lead from the leaf to the signed checkpoint's root."""

    code = "c2pa_log_proof_invalid"
    title = "Log inclusion proof does not verify"


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


# ---------------------------------------------------------------- the log proof


@dataclass(frozen=True)
class LogProof:
    """An inclusion proof as the gateway hands it out, normalized.

    ``entry`` is the logged entry itself when the proof came as a ``/log/receipt`` answer;
    a soft-binding match carries only the leaf hash (the entry may be private)."""

    index: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    checkpoint: str
    tree_size: int | None = None
    entry: bytes | None = None


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise LogProofMissing(f"the proof's {what} is not a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise LogProofMissing(f"the proof's {what} is not hex") from exc


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LogProofMissing(f"the proof's {what} is not a non-negative integer")
    return value


def _from_inclusion(body: dict[str, Any]) -> LogProof:
    path = body.get("inclusion_path")
    if not isinstance(path, list) or len(path) > _MAX_PATH:
        raise LogProofMissing("the proof's inclusion_path is not a list of at most 64 hashes")
    note = body.get("checkpoint")
    if not isinstance(note, str):
        raise LogProofMissing("the proof carries no checkpoint note")
    size = body.get("tree_size")
    return LogProof(
        index=_int(body.get("index"), "index"),
        leaf_hash=_hex(body.get("leaf_hash"), "leaf_hash"),
        path=tuple(_hex(h, "inclusion_path hash") for h in path),
        checkpoint=note,
        tree_size=None if size is None else _int(size, "tree_size"),
    )


def _from_receipt(body: dict[str, Any]) -> LogProof:
    from licensing.tlog.receipt import parse_receipt

    entry = body.get("entry")
    if not isinstance(entry, str):
        raise LogProofMissing("the receipt carries no entry")
    try:
        parsed = parse_receipt(str(body.get("receipt")))
    except TransparencyLogError as exc:
        raise LogProofMissing(f"the receipt does not parse: {exc}") from exc
    raw = entry.encode("utf-8")
    return LogProof(
        index=parsed.index,
        leaf_hash=leaf_hash(raw),
        path=tuple(parsed.inclusion_proof),
        checkpoint=parsed.checkpoint_note,
        entry=raw,
    )


def parse_log_proof(document: Any, manifest_id: str | None = None) -> LogProof:
    """The proof in any shape the gateway returns it.

    A ``/c2pa/v1/matches/...`` answer (the match for ``manifest_id``, else the first), one
    match of it, its ``tiergate.inclusion_proof`` object, or a ``/log/receipt/{index}`` answer
    (``entry`` + c2sp.org/tlog-proof ``receipt``: then the leaf is hashed from the entry).
    """
    if not isinstance(document, dict):
        raise LogProofMissing("the proof document is not a JSON object")
    if "matches" in document:
        matches = [m for m in document["matches"] or [] if isinstance(m, dict)]
        chosen = [m for m in matches if m.get("manifestId") == manifest_id] or matches[:1]
        if not chosen:
            raise LogProofMissing("the resolution answer has no match")
        document = chosen[0]
    if "tiergate" in document:
        inner = (document.get("tiergate") or {}).get("inclusion_proof")
        if not isinstance(inner, dict):
            raise LogProofMissing(
                "the match carries no inclusion proof (its call is not in a checkpoint yet)"
            )
        document = inner
    if "receipt" in document:
        return _from_receipt(document)
    if "inclusion_path" in document:
        return _from_inclusion(document)
    raise LogProofMissing(
        "the proof is none of: a resolution answer, a match, an inclusion_proof, a receipt"
    )


def open_log_checkpoint(note: str, log_vkey: str) -> Checkpoint:
    """The checkpoint in ``note`` once its signature by the log key verifies."""
    try:
        verifier = Verifier.from_vkey(log_vkey.strip())
    except TransparencyLogError as exc:
        raise CheckpointUnverified(f"the log key is not a note verifier key: {exc}") from exc
    try:
        return open_checkpoint(note, [verifier])
    except TransparencyLogError as exc:
        raise CheckpointUnverified(f"the checkpoint is not signed by the log key: {exc}") from exc


# ---------------------------------------------------------------- all together


@dataclass(frozen=True)
class OfflineVerification:
    """What was verified, for a person (``checks``) and for a program (the fields)."""

    manifest_id: str
    signer: str
    model: str
    release_statement_digest: str | None
    call_id: str
    choice_index: int
    log_index: int
    created: str | None
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


def verify_log_proof(
    proof: LogProof, *, log_index: int, call_id: str, log_vkey: str
) -> tuple[Checkpoint, list[str]]:
    """Check ``proof`` for the entry ``log_index`` (of ``call_id``) against the log key."""
    checks = []
    checkpoint = open_log_checkpoint(proof.checkpoint, log_vkey)
    checks.append(f"checkpoint {checkpoint.origin} size {checkpoint.size} is signed by the log key")
    if proof.index != log_index:
        raise LogProofMismatch(
            f"the proof is for log entry {proof.index}; the manifest names entry {log_index}"
        )
    if proof.tree_size is not None and proof.tree_size != checkpoint.size:
        raise LogProofInvalid(
            f"the proof is for a tree of {proof.tree_size} leaves; "
            f"the checkpoint signs {checkpoint.size}"
        )
    if proof.entry is not None:
        try:
            logged = json.loads(proof.entry)
            logged_call = logged.get("fields", {}).get("call_id")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise LogProofMismatch("the receipt's entry is not a tiergate log entry") from exc
        if logged_call != call_id:
            raise LogProofMismatch(
                f"the receipt's entry logs call {str(logged_call)[:80]!r}, not {call_id!r}"
            )
        if not hmac.compare_digest(leaf_hash(proof.entry), proof.leaf_hash):
            raise LogProofInvalid("the receipt's entry does not hash to its leaf")
    try:
        verify_inclusion(
            proof.leaf_hash, proof.index, checkpoint.size, list(proof.path), checkpoint.root_hash
        )
    except (TransparencyLogError, binascii.Error) as exc:
        raise LogProofInvalid(f"the inclusion proof does not verify: {exc}") from exc
    what = "the logged entry" if proof.entry is not None else "the leaf"
    checks.append(
        f"{what} at index {proof.index} is included in that checkpoint (audit path verified)"
    )
    return checkpoint, checks


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
        log_index = _int(generation.get("log_index"), "log_index")
        call_id = str(generation["call_id"])
        choice = _int(generation.get("choice_index"), "choice_index")
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
