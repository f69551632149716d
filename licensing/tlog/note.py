"""C2SP signed notes with Ed25519 keys in the golang.org/x/mod/sumdb/note key string forms."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from licensing.errors import (
    NoteKeyInvalidError,
    NoteMalformedError,
    NoteSignatureInvalidError,
    NoteUnverifiedError,
)

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "VerifiedNote",
    "Verifier",
    "format_note",
    "key_id",
    "open_note",
    "PublicKeyBase",
    "parse_key_string",
    "parse_note",
    "sign_note",
    "valid_key_name",
]

#: Signature type byte of Ed25519 note signatures.
ALG_ED25519 = 0x01
#: The spec asks verifiers to bound notes; 1 MiB leaves room for 16+ post-quantum cosignatures.
MAX_NOTE_BYTES = 1 << 20
#: Same bound as golang.org/x/mod/sumdb/note; the spec requires accepting at least 16.
MAX_SIGNATURES = 100

_EM_DASH_PREFIX = "\u2014 "
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """Key id: the first four bytes (big endian) of SHA-256(name || 0x0A || alg || public key)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def valid_key_name(name: str) -> bool:
    """Key names are non-empty UTF-8 without spaces, control characters or ``+``."""
    return _valid_name(name)


def parse_key_string(text: str, what: str, alg: int) -> tuple[str, int, bytes]:
    """Split ``name+hexid+base64(alg || key)`` (checking ``alg``) into name, id and key."""
    return _parse_key_parts(text, what, alg)


def _valid_name(name: str) -> bool:
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _b64decode_strict(text: str, what: str, error: type[Exception]) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise error(f"{what} is not valid base64") from None
    # Reject non-canonical encodings (stray padding bits) so one value has one spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not canonical base64")
    return raw


def _parse_key_parts(text: str, what: str, alg: int = ALG_ED25519) -> tuple[str, int, bytes]:
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteKeyInvalidError(f"{what} must be name+hexid+base64")
    name, hex_id, b64 = parts
    if not _valid_name(name):
        raise NoteKeyInvalidError(f"{what} has an invalid key name")
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise NoteKeyInvalidError(f"{what} key id must be 8 lowercase hex digits")
    raw = _b64decode_strict(b64, f"{what} key", NoteKeyInvalidError)
    if len(raw) != 33 or raw[0] != alg:
        raise NoteKeyInvalidError(f"{what} is not an Ed25519 key of signature type {alg:#04x}")
    return name, int(hex_id, 16), raw[1:]


class PublicKeyBase:
    """An Ed25519 public key of a signed-note ecosystem, built from its published
    ``name+hexid+base64(ALGORITHM || key)`` vkey. ``ALGORITHM`` is the signature type byte
    (0x01 note signatures; witness cosignatures use 0x04); subclasses add what they verify.
    """

    __slots__ = ("_key", "key_id", "name", "public_key")
    ALGORITHM = ALG_ED25519
    _WHAT = "verifier key"

    def __init__(self, name: str, public_key: bytes) -> None:
        if not _valid_name(name):
            raise NoteKeyInvalidError(f"invalid key name {name!r}")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise NoteKeyInvalidError("not a 32-byte Ed25519 public key") from None
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.ALGORITHM, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        name, claimed_id, public_key = _parse_key_parts(vkey, cls._WHAT, cls.ALGORITHM)
        verifier = cls(name, public_key)
        if verifier.key_id != claimed_id:
            raise NoteKeyInvalidError(f"{cls._WHAT} id does not match its name and key")
        return verifier

    @property
    def vkey(self) -> str:
        """The published form ``name+hexid+base64(ALGORITHM || public key)``."""
        b64 = base64.b64encode(bytes([self.ALGORITHM]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey!r})"


class Verifier(PublicKeyBase):
    """An Ed25519 note verifier (signature type 0x01)."""

    __slots__ = ()

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 note signer. Its key string is a secret: never log it.

    ``ALGORITHM`` is the signature type byte of its key id and key strings: 0x01 for notes;
    a subclass with another type (witness cosignatures, 0x04) shares all the key handling.
    """

    __slots__ = ("_key", "_seed", "key_id", "name", "public_key")
    ALGORITHM = ALG_ED25519
    _WHAT = "signer key"

    def __init__(self, name: str, seed: bytes) -> None:
        if not _valid_name(name):
            raise NoteKeyInvalidError(f"invalid key name {name!r}")
        try:
            self._key = Ed25519PrivateKey.from_private_bytes(seed)
        except ValueError:
            raise NoteKeyInvalidError("not a 32-byte Ed25519 seed") from None
        self._seed = bytes(seed)
        self.name = name
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, self.ALGORITHM, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_private_key(cls, skey: str) -> Self:
        """Parse ``PRIVATE+KEY+name+hexid+base64(ALGORITHM || seed)``."""
        if not skey.startswith(_PRIVATE_PREFIX):
            raise NoteKeyInvalidError(f"{cls._WHAT} must start with PRIVATE+KEY+")
        name, claimed_id, seed = _parse_key_parts(
            skey[len(_PRIVATE_PREFIX) :], cls._WHAT, cls.ALGORITHM
        )
        signer = cls(name, seed)
        if signer.key_id != claimed_id:
            raise NoteKeyInvalidError(f"{cls._WHAT} id does not match its name and key")
        return signer

    @property
    def private_key(self) -> str:
        b64 = base64.b64encode(bytes([self.ALGORITHM]) + self._seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{b64}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        # The seed stays out of reprs so a stray log line cannot leak it.
        return f"{type(self).__name__}(name={self.name!r}, key_id={self.key_id:08x})"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key id and the raw signature bytes."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_EM_DASH_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed note whose signatures have NOT been checked; use :func:`open_note` to trust it."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note with at least one signature verified by a trusted key."""

    text: str
    verified_by: tuple[Verifier, ...]
    unverified: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    # A bare newline would serialise as a note starting with its blank separator line.
    if text in ("", "\n"):
        raise NoteMalformedError("note text is empty")
    if not text.endswith("\n"):
        raise NoteMalformedError("note text must end in a newline")
    if _CONTROL.search(text):
        raise NoteMalformedError("note contains a control character")


def format_note(text: str, signatures: Iterable[NoteSignature]) -> str:
    """Serialise ``text`` (ending in a newline) and its signature lines."""
    _check_text(text)
    lines = [s.line() for s in signatures]
    if not lines:
        raise NoteMalformedError("a signed note needs at least one signature")
    return text + "\n" + "".join(lines)


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` with every signer and return the serialised note."""
    _check_text(text)
    try:
        message = text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteMalformedError("note text is not valid UTF-8") from None
    sigs = [NoteSignature(s.name, s.key_id, s.sign(message)) for s in signers]
    return format_note(text, sigs)


def parse_note(data: str | bytes) -> Note:
    """Split a note into text and signature lines, strictly, without verifying anything."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise NoteMalformedError("note is not valid UTF-8") from None
    else:
        raw = data
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteMalformedError(f"note exceeds {MAX_NOTE_BYTES} bytes")
    try:
        data = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteMalformedError("note is not valid UTF-8") from None
    _check_text(data)
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteMalformedError("note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    _check_text(text)
    lines = block.split("\n")[:-1]
    if not lines:
        raise NoteMalformedError("note has no signatures")
    if len(lines) > MAX_SIGNATURES:
        raise NoteMalformedError(f"note has more than {MAX_SIGNATURES} signatures")
    return Note(text=text, signatures=tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_EM_DASH_PREFIX):
        raise NoteMalformedError("signature line must start with an em dash and a space")
    name, sep, b64 = line[len(_EM_DASH_PREFIX) :].partition(" ")
    if not sep or not _valid_name(name) or not b64:
        raise NoteMalformedError("malformed signature line")
    blob = _b64decode_strict(b64, "signature", NoteMalformedError)
    if len(blob) < 5:
        raise NoteMalformedError("signature is too short")
    return NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def open_note(data: str | bytes, verifiers: Iterable[Verifier]) -> VerifiedNote:
    """Parse and verify a note against trusted ``verifiers``.

    Signatures from unknown keys (name and id not both matching) are ignored; a failing signature
    from a known key rejects the note; at least one known signature must verify.
    """
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    message = note.text.encode()
    verified: dict[tuple[str, int], Verifier] = {}
    unverified: list[NoteSignature] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified.append(sig)
            continue
        if not verifier.verify(message, sig.signature):
            raise NoteSignatureInvalidError(
                f"signature by {sig.name}+{sig.key_id:08x} does not verify"
            )
        verified[(sig.name, sig.key_id)] = verifier
    if not verified:
        raise NoteUnverifiedError("note carries no signature from a trusted key")
    return VerifiedNote(
        text=note.text, verified_by=tuple(verified.values()), unverified=tuple(unverified)
    )
