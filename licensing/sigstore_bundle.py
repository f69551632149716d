"""model_signing-compatible Sigstore bundles: sign a model folder's file digests, verify them.

The output is accepted unchanged by ``model_signing verify key DIR --signature DIR/model.sig
--public_key pub.pem``. Format (model_signing 1.x, key-based signing):

- bundle: ``{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
  "verificationMaterial": {"publicKey": {"hint": H}, "tlogEntries": []}, "dsseEnvelope": E}``
  where ``H`` is the hex sha256 of the public key's SubjectPublicKeyInfo *PEM* text (that is how
  model_signing computes it; our own key ids hash the DER instead);
- ``E``: a DSSE envelope, payload type ``application/vnd.in-toto+json``, ECDSA P-256 / SHA-256
  DER signature over PAE;
- payload: an in-toto Statement v1, predicate type ``https://model_signing/signature/v1.0``, one
  subject ``{name: <folder name>, digest: {sha256: M}}`` and predicate
  ``{serialization: {method: "files", hash_type: "sha256", allow_symlinks, ignore_paths},
  resources: [{name, algorithm: "sha256", digest}]}`` with resources in path-component order
  and ``M = sha256(raw digest of resource 1 || raw digest of resource 2 || ...)``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from licensing._fields import as_list, as_object, get_bool, get_sha256, get_str
from licensing._paths import check_relative_path, path_sort_key
from licensing.canonical import canonical_json, is_sha256_hex, parse_json, sha256_hex
from licensing.dsse import Envelope, sign_envelope, verify_envelope
from licensing.errors import (
    CanonicalJSONError,
    EnvelopeError,
    ModelBundleFormatError,
    ModelBundleSignatureError,
    ModelManifestMismatchError,
    StatementFormatError,
    TierFileInvalidError,
    UnsupportedKeyError,
)
from licensing.intoto import PAYLOAD_TYPE, Statement, Subject, statement_from_dict
from licensing.keys import PrivateKey, PublicKey
from licensing.layout import SIGNATURE_FILE, TierFile

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_IGNORE_PATHS",
    "DEFAULT_MAX_BUNDLE_BYTES",
    "MODEL_SIGNING_PREDICATE_TYPE",
    "ModelManifest",
    "ResourceDigest",
    "check_files_match",
    "compute_manifest_digest",
    "public_key_hint",
    "sign_model_bundle",
    "verify_model_bundle",
    "verify_model_bundle_manifest",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MODEL_SIGNING_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# What `model_signing sign` leaves out by default; we record the same list so that its verifier
# skips the same paths (the signature file itself included).
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (
    SIGNATURE_FILE,
    ".git",
    ".github",
    ".gitignore",
    ".gitattributes",
)
# ~200 bytes per resource: room for well over 100k files.
DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_RESOURCES = 200_000


@dataclass(frozen=True)
class ResourceDigest:
    """One signed resource of a model bundle: its relative path and sha256 (sizes are not signed
    by model_signing)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class ModelManifest:
    """What a verified bundle says: model name, manifest digest, resources and ignored paths."""

    model_name: str
    manifest_digest: str
    resources: tuple[ResourceDigest, ...]
    ignore_paths: tuple[str, ...]
    allow_symlinks: bool


def compute_manifest_digest(digests: Iterable[tuple[str, str]]) -> str:
    """sha256 over the raw sha256 digests of ``(path, hex digest)`` pairs, in manifest order.

    This is model_signing's subject digest; tiergate's release statement reuses it as each
    tier's manifest digest, which ties the release record to the per-tier bundles.
    """
    ordered = sorted(digests, key=lambda item: path_sort_key(item[0]))
    for path, digest in ordered:
        if not is_sha256_hex(digest):
            raise ModelBundleFormatError(f"{path!r}: digest must be 64 lowercase hex digits")
    return sha256_hex(b"".join(bytes.fromhex(digest) for _, digest in ordered))


def public_key_hint(public_key: PublicKey) -> str:
    """The ``verificationMaterial.publicKey.hint`` model_signing writes and checks."""
    return sha256_hex(public_key.to_pem())


def sign_model_bundle(
    model_name: str,
    files: Iterable[TierFile | tuple[str, str, int]],
    key: PrivateKey,
    *,
    ignore_paths: Sequence[str] = DEFAULT_IGNORE_PATHS,
    allow_symlinks: bool = False,
) -> bytes:
    """A Sigstore bundle (JSON bytes, to be written as ``model.sig``) over ``files``.

    ``model_name`` is informative (model_signing uses the folder name). Paths must be clean
    relative POSIX paths, unique, and outside ``ignore_paths``; digests lowercase hex sha256.
    Only ECDSA P-256 keys are accepted, as model_signing verifies no other key type here.
    """
    if key.key_type != "ecdsa-p256":
        raise UnsupportedKeyError("model_signing bundles need an ECDSA P-256 key")
    err = ModelBundleFormatError
    if not isinstance(model_name, str) or not model_name or len(model_name) > 1024:
        raise err("model name must be a non-empty string")
    if isinstance(ignore_paths, str):
        ignore_paths = (ignore_paths,)
    ignored = tuple(check_relative_path(p, "ignore path", err) for p in ignore_paths)
    entries: dict[str, str] = {}
    for item in files:
        try:
            entry = item if isinstance(item, TierFile) else TierFile(*item)
        except TierFileInvalidError as exc:
            raise err(exc.message) from exc
        path = entry.path
        if path in entries:
            raise err(f"file {path!r} is listed twice")
        if any(path == p or path.startswith(p + "/") for p in ignored):
            raise err(f"file {path!r} lies under an ignored path; model_signing would skip it")
        if not is_sha256_hex(entry.sha256):
            raise err(f"file {path!r} needs a 64-digit lowercase hex sha256")
        entries[path] = entry.sha256
    if not entries:
        raise err("a model bundle needs at least one file")
    ordered = sorted(entries.items(), key=lambda kv: path_sort_key(kv[0]))
    statement = Statement(
        subjects=(Subject.sha256(model_name, compute_manifest_digest(ordered)),),
        predicate_type=MODEL_SIGNING_PREDICATE_TYPE,
        predicate={
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": bool(allow_symlinks),
                "ignore_paths": list(ignored),
            },
            "resources": [
                {"name": path, "algorithm": "sha256", "digest": digest} for path, digest in ordered
            ],
        },
    )
    envelope = sign_envelope(PAYLOAD_TYPE, statement.to_json(), key)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": public_key_hint(key.public_key)},
            "tlogEntries": [],
        },
        "dsseEnvelope": envelope.to_dict(),
    }
    return canonical_json(bundle)


def verify_model_bundle(
    bundle_bytes: bytes, public_key: PublicKey, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
) -> list[ResourceDigest]:
    """Verify a bundle's signature under ``public_key`` and its manifest; return its resources.

    Checks the media type, the key hint (when present), the DSSE signature, the statement and
    predicate shape, and that the subject digest matches the resources. Comparing the resources
    with files on disk is the caller's step. Raises a :class:`ModelBundleError` only.
    """
    return list(
        verify_model_bundle_manifest(bundle_bytes, public_key, max_bytes=max_bytes).resources
    )


def verify_model_bundle_manifest(
    bundle_bytes: bytes, public_key: PublicKey, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
) -> ModelManifest:
    """Like :func:`verify_model_bundle`, returning the whole verified manifest."""
    err = ModelBundleFormatError
    if not isinstance(bundle_bytes, (bytes, bytearray)):
        raise err("a bundle must be bytes")
    try:
        value = parse_json(bytes(bundle_bytes), max_bytes=max_bytes)
    except CanonicalJSONError as exc:
        raise err(f"bundle is not valid JSON: {exc.message}") from exc
    bundle = as_object(value, "bundle", err)
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise err(f"bundle mediaType must be {BUNDLE_MEDIA_TYPE}")
    material = as_object(bundle.get("verificationMaterial"), "verificationMaterial", err)
    key_material = material.get("publicKey")
    if key_material is not None:
        hint = as_object(key_material, "verificationMaterial.publicKey", err).get("hint")
        if hint is not None:
            if not isinstance(hint, str):
                raise err("verificationMaterial.publicKey.hint must be a string")
            if not hmac.compare_digest(hint.encode(), public_key_hint(public_key).encode()):
                raise ModelBundleSignatureError("the bundle names another public key")
    try:
        envelope = Envelope.from_dict(bundle.get("dsseEnvelope"))
    except EnvelopeError as exc:
        raise err(f"bundle dsseEnvelope: {exc.message}") from exc
    try:
        verified = verify_envelope(envelope, [public_key])
    except EnvelopeError as exc:
        raise ModelBundleSignatureError("the bundle signature does not verify") from exc
    if verified.payload_type != PAYLOAD_TYPE:
        raise err(f"DSSE payload type must be {PAYLOAD_TYPE}")
    try:
        statement = statement_from_dict(
            parse_json(verified.payload, max_bytes=max_bytes),
            predicate_type=MODEL_SIGNING_PREDICATE_TYPE,
        )
    except (CanonicalJSONError, StatementFormatError) as exc:
        raise err(f"bundle statement: {exc.message}") from exc
    return _manifest_from_statement(statement)


def _manifest_from_statement(statement: Statement) -> ModelManifest:
    err = ModelBundleFormatError
    if len(statement.subjects) != 1:
        raise err("a model statement has exactly one subject")
    subject = statement.subjects[0]
    expected = subject.sha256_hex
    if expected is None:
        raise err("the model subject has no sha256 digest")
    serialization = as_object(statement.predicate.get("serialization"), "serialization", err)
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise err("only the 'files' serialization with sha256 is supported")
    allow_symlinks = get_bool(serialization, "allow_symlinks", "serialization", err)
    raw_ignored = serialization.get("ignore_paths", [])
    ignored = tuple(
        get_str({"p": p}, "p", "serialization.ignore_paths", err)
        for p in as_list(raw_ignored, "serialization.ignore_paths", err, max_items=1024)
    )
    raw_resources = as_list(
        statement.predicate.get("resources"), "resources", err, max_items=MAX_RESOURCES
    )
    resources: list[ResourceDigest] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_resources):
        what = f"resources[{index}]"
        item = as_object(raw, what, err)
        name = check_relative_path(item.get("name"), f"{what}.name", err)
        if item.get("algorithm") != "sha256":
            raise err(f"{what}.algorithm must be sha256")
        digest = get_sha256(item, "digest", what, err)
        if name in seen:
            raise err(f"resource {name!r} appears twice")
        seen.add(name)
        resources.append(ResourceDigest(name=name, sha256=digest))
    # The subject digest covers the resources in the order listed, as model_signing checks it.
    actual = sha256_hex(b"".join(bytes.fromhex(r.sha256) for r in resources))
    if not hmac.compare_digest(actual.encode(), expected.encode()):
        raise ModelManifestMismatchError("the subject digest does not match the resources")
    return ModelManifest(
        model_name=subject.name,
        manifest_digest=expected,
        resources=tuple(resources),
        ignore_paths=ignored,
        allow_symlinks=allow_symlinks,
    )


def check_files_match(
    resources: Iterable[ResourceDigest],
    files: Iterable[TierFile | tuple[str, str, int]],
    *,
    allow_unsigned: bool = False,
) -> None:
    """Raise :class:`ModelManifestMismatchError` unless ``files`` are exactly the signed resources.

    ``allow_unsigned`` tolerates extra files, like model_signing's ``--ignore_unsigned_files``.
    Digests are compared in constant time; the message names at most a few paths.
    """
    signed = {r.name: r.sha256 for r in resources}
    present = {}
    for item in files:
        # Files found on disk are compared, not validated: an odd name is just "extra".
        path, sha256 = (item.path, item.sha256) if isinstance(item, TierFile) else item[:2]
        present[path] = sha256
    missing = sorted(signed.keys() - present.keys())
    extra = [] if allow_unsigned else sorted(present.keys() - signed.keys())
    changed = sorted(
        name
        for name in signed.keys() & present.keys()
        if not hmac.compare_digest(signed[name].encode(), present[name].encode())
    )
    problems = [
        f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (("missing", missing), ("unsigned", extra), ("changed", changed))
        if names
    ]
    if problems:
        raise ModelManifestMismatchError("files do not match the signature; " + "; ".join(problems))
