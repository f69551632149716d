"""Signed download-link claims: HMAC-SHA256 over canonical bytes, key ids, constant-time checks.

A link token is ``tgl1.<kid>.<payload>.<mac>`` (base64url, no padding). The MAC covers the
version, the key id and the payload, so the payload is decoded only after it verifies: a
forged token never reaches the JSON parser. Keys are looked up by id, so adding a key and
signing with it leaves older links valid until they expire; then the old key can go.
The clock is always passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gateway.errors import Forbidden, GatewayError, Unauthenticated

__all__ = [
    "TOKEN_PREFIX",
    "LinkBudgetExhausted",
    "LinkClaims",
    "LinkExpired",
    "LinkInvalid",
    "LinkMalformed",
    "LinkNotYetValid",
    "LinkObject",
    "LinkRevoked",
    "LinkWrongFile",
    "LinkWrongNetwork",
    "ReleaseYanked",
    "client_network",
    "header_text",
    "new_link_id",
    "sign_link",
    "verify_link",
]

TOKEN_PREFIX = "tgl1"  # noqa: S105 (a format marker, not a secret)
MAX_TOKEN_LENGTH = 4096
_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64_RE = re.compile(r"[A-Za-z0-9_-]+")
_DOMAIN = b"tiergate-link-v1\n"


class LinkMalformed(Unauthenticated):
    code = "link_malformed"
    title = "Malformed link"


class LinkInvalid(Unauthenticated):
    code = "link_invalid_signature"
    title = "Link signature invalid"


class LinkNotYetValid(Unauthenticated):
    code = "link_not_yet_valid"
    title = "Link not yet valid"


class LinkExpired(GatewayError):
    code = "link_expired"
    status = 410
    title = "Link expired"


class LinkRevoked(GatewayError):
    code = "link_revoked"
    status = 410
    title = "Link revoked"


class ReleaseYanked(GatewayError):
    """410 with the headers Hugging Face clients map to an error they re-raise as is.

    ``huggingface_hub`` turns any other error on model info or a file's HEAD into
    "check your Internet connection"; ``RevisionNotFound`` is re-raised by ``snapshot_download``
    and ``hf_hub_download`` alike, and ``X-Error-Message`` (the yank reason) is shown with it.
    """

    code = "release_yanked"
    status = 410
    title = "Release yanked"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("X-Error-Code", "RevisionNotFound")
        self.headers.setdefault("X-Error-Message", header_text(message))


_HEADER_MAX = 300


def header_text(text: str) -> str:
    """``text`` as one line of printable ASCII: safe in an HTTP header, whoever wrote it."""
    import unicodedata

    folded = unicodedata.normalize("NFKD", text)
    plain = "".join(c if " " <= c <= "~" else (" " if c.isspace() else "") for c in folded)
    plain = " ".join(plain.split())
    return plain if len(plain) <= _HEADER_MAX else plain[: _HEADER_MAX - 3] + "..."


class LinkWrongFile(Forbidden):
    code = "link_wrong_file"
    title = "Link is for another file"


class LinkWrongNetwork(Forbidden):
    code = "link_wrong_network"
    title = "Link bound to another network"


class LinkBudgetExhausted(Forbidden):
    code = "link_budget_exhausted"
    title = "Link byte budget exhausted"


@dataclass(frozen=True, slots=True)
class LinkObject:
    """The canonical object a link opens: one file of one tier of one release version."""

    repo_id: str
    version: str
    tier: str
    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class LinkClaims:
    link_id: str
    key_id: str
    method: str
    object: LinkObject
    subject: int | None  # user id; None for anonymous links to open tiers
    grant_id: int | None
    not_before: int  # unix seconds
    expires: int
    network: str | None = None  # CIDR the client must come from, when bound

    def to_payload(self) -> bytes:
        body: dict[str, Any] = {
            "v": 1,
            "lid": self.link_id,
            "kid": self.key_id,
            "m": self.method,
            "obj": asdict(self.object),
            "sub": self.subject,
            "grant": self.grant_id,
            "nbf": self.not_before,
            "exp": self.expires,
            "net": self.network,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def new_link_id() -> str:
    return secrets.token_urlsafe(12)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if _B64_RE.fullmatch(text) is None or len(text) % 4 == 1:
        raise LinkMalformed("the link token is not valid base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise LinkMalformed("the link token is not valid base64url") from exc


def _mac(key: bytes, kid: str, payload_b64: str) -> bytes:
    message = _DOMAIN + f"{TOKEN_PREFIX}.{kid}.{payload_b64}".encode("ascii")
    return hmac.new(key, message, hashlib.sha256).digest()


def sign_link(claims: LinkClaims, keys: Mapping[str, bytes]) -> str:
    """The token for ``claims``, signed with ``keys[claims.key_id]``."""
    payload_b64 = _b64(claims.to_payload())
    mac = _mac(keys[claims.key_id], claims.key_id, payload_b64)
    return f"{TOKEN_PREFIX}.{claims.key_id}.{payload_b64}.{_b64(mac)}"


def _claims_from(data: dict[str, Any]) -> LinkClaims:
    try:
        obj = data["obj"]
        claims = LinkClaims(
            link_id=str(data["lid"]),
            key_id=str(data["kid"]),
            method=str(data["m"]),
            object=LinkObject(
                repo_id=str(obj["repo_id"]),
                version=str(obj["version"]),
                tier=str(obj["tier"]),
                path=str(obj["path"]),
                sha256=str(obj["sha256"]),
            ),
            subject=data["sub"],
            grant_id=data["grant"],
            not_before=data["nbf"],
            expires=data["exp"],
            network=data.get("net"),
        )
    except (KeyError, TypeError) as exc:
        raise LinkMalformed("the link claims are incomplete") from exc
    for number in (claims.not_before, claims.expires):
        if isinstance(number, bool) or not isinstance(number, int):
            raise LinkMalformed("the link times are not integers")
    for optional in (claims.subject, claims.grant_id):
        if optional is not None and (isinstance(optional, bool) or not isinstance(optional, int)):
            raise LinkMalformed("the link subject or grant is not an integer")
    return claims


def verify_link(
    token: str,
    keys: Mapping[str, bytes],
    *,
    now: datetime,
    leeway_seconds: int,
    method: str,
) -> LinkClaims:
    """Check the token's signature, time window and method; return its claims.

    Raises ``LinkMalformed`` (truncated or garbled), ``LinkInvalid`` (tampered or signed by an
    unknown key), ``LinkNotYetValid`` or ``LinkExpired``. Object, grant, network and budget
    checks are the caller's: they need the request and the database.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise LinkMalformed("the link token is too long")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not parts[2] or not parts[3]:
        raise LinkMalformed("the link token is truncated or not a tiergate link")
    _, kid, payload_b64, mac_b64 = parts
    if _KID_RE.fullmatch(kid) is None:
        raise LinkMalformed("the link key id is malformed")
    if _B64_RE.fullmatch(payload_b64) is None:  # before the MAC: it is computed over ASCII
        raise LinkMalformed("the link token is not valid base64url")
    mac = _unb64(mac_b64)
    key = keys.get(kid)
    # An unknown key id is a forgery or a link older than every kept key: same answer.
    expected = _mac(key if key is not None else b"\0" * 32, kid, payload_b64)
    if not hmac.compare_digest(mac, expected) or key is None:
        raise LinkInvalid("the link signature does not verify")
    try:
        data = json.loads(_unb64(payload_b64))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LinkMalformed("the link claims are not JSON") from exc
    if not isinstance(data, dict) or data.get("v") != 1:
        raise LinkMalformed("unknown link claims version")
    claims = _claims_from(data)
    if claims.key_id != kid:
        raise LinkInvalid("the link key id does not match its claims")
    allowed = {claims.method, "HEAD"} if claims.method == "GET" else {claims.method}
    if method not in allowed:
        raise LinkWrongFile(f"this link is for {claims.method}, not {method}")
    clock = int(now.timestamp())
    if clock + leeway_seconds < claims.not_before:
        raise LinkNotYetValid("the link is not valid yet")
    if clock - leeway_seconds >= claims.expires:
        raise LinkExpired("the link has expired: ask for a new one")
    return claims


def client_network(address: str | None) -> str | None:
    """The network a client address belongs to (/24 for IPv4, /64 for IPv6), as CIDR."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def in_network(address: str | None, network: str) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False
