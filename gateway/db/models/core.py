"""The gateway's core tables: accounts, keys, releases and blobs, the log, access and links."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from gateway.db.timeutil import UtcDateTime, utcnow

# The largest row id any table can hold. Id columns are `Integer`: INTEGER on SQLite (64-bit)
# but int4 on PostgreSQL, so the narrower bound is the one every id from outside must meet;
# a larger value names no row, and handing it to the driver fails the query instead.
MAX_ROW_ID = (1 << 31) - 1


class Role(StrEnum):
    admin = "admin"
    publisher = "publisher"
    developer = "developer"


def _ts(nullable: bool = False) -> Column[datetime]:
    # Aware UTC on every read, SQLite included (see UtcDateTime).
    return Column(UtcDateTime(), nullable=nullable)


class Org(SQLModel, table=True):
    __tablename__ = "orgs"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    org_id: int | None = Field(default=None, foreign_key="orgs.id", index=True)
    disabled: bool = Field(default=False)
    password_hash: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(sa_column=Column(String(100), nullable=False))
    # The first characters of the token, shown in listings so people can tell tokens apart.
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    # sha256 of the whole token; the token itself is never stored.
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    scopes: str = Field(sa_column=Column(String(500), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # The credential that minted this token (at most one is set; none for operator-made
    # tokens): a token never outlives, out-scopes or survives the revocation of its parent.
    parent_token_id: int | None = Field(default=None, index=True)
    parent_client_id: str | None = Field(
        default=None, sa_column=Column(String(64), nullable=True, index=True)
    )
    parent_jti: str | None = Field(
        default=None, sa_column=Column(String(64), nullable=True, index=True)
    )


class PublicKeyRecord(SQLModel, table=True):
    """A public key registered by an account (and, for publishers, for their org)."""

    __tablename__ = "public_keys"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    # Set when a publisher registers the key for their org: only such keys sign releases.
    org_id: int | None = Field(default=None, foreign_key="orgs.id", index=True)
    key_id: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    key_type: str = Field(sa_column=Column(String(16), nullable=False))
    pem: str = Field(sa_column=Column(Text, nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class Blob(SQLModel, table=True):
    """A content-addressed blob the storage backend holds, verified on arrival."""

    __tablename__ = "blobs"

    sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class BlobHolder(SQLModel, table=True):
    """An org that proved it has a blob's bytes by uploading them (verified on arrival).

    Blobs are stored once whoever sent them, but a digest is public knowledge, not
    possession: a release counts a blob as present only when its own org holds it.
    """

    __tablename__ = "blob_holders"

    org_id: int = Field(foreign_key="orgs.id", primary_key=True)
    sha256: str = Field(
        sa_column=Column(String(64), ForeignKey("blobs.sha256"), primary_key=True, index=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class ReleaseStatus(StrEnum):
    pending = "pending"  # registered, blobs still arriving; invisible to everyone else
    published = "published"
    yanked = "yanked"


class Release(SQLModel, table=True):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("org_id", "name", "version", name="uq_release_version"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="orgs.id", index=True)
    name: str = Field(sa_column=Column(String(96), nullable=False))
    version: str = Field(sa_column=Column(String(64), nullable=False))
    repo_id: str = Field(sa_column=Column(String(161), nullable=False, index=True))
    status: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    # The signed release statement, verbatim (DSSE envelope JSON), so anyone can re-verify it.
    statement_envelope: str = Field(sa_column=Column(Text, nullable=False))
    statement_digest: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    signer_key_id: str = Field(sa_column=Column(String(64), nullable=False))
    license: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    terms_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    terms_digest: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    model_card: str = Field(sa_column=Column(Text, nullable=False))
    policy_json: str = Field(sa_column=Column(Text, nullable=False))
    yank_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    yanked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_by: int = Field(foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    published_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class ReleaseTier(SQLModel, table=True):
    __tablename__ = "release_tiers"
    __table_args__ = (UniqueConstraint("release_id", "tier", name="uq_release_tier"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    gated: bool = Field(default=False)
    # The tier's model_signing bundle (`model.sig`), verbatim.
    bundle: str = Field(sa_column=Column(Text, nullable=False))
    manifest_digest: str = Field(sa_column=Column(String(64), nullable=False))


class ReleaseFile(SQLModel, table=True):
    __tablename__ = "release_files"
    __table_args__ = (UniqueConstraint("release_id", "tier", "path", name="uq_release_file"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    path: str = Field(sa_column=Column(String(1024), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class LogState(SQLModel, table=True):
    """The single row that serializes log appends and holds the integrated tree's edge."""

    __tablename__ = "log_state"

    id: int = Field(default=1, primary_key=True)
    next_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    tree_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: str = Field(sa_column=Column(String(64), nullable=False))
    # JSON list of hex hashes: the perfect subtrees on the right edge of the integrated tree.
    right_edge: str = Field(sa_column=Column(Text, nullable=False))


class LogEntry(SQLModel, table=True):
    __tablename__ = "log_entries"

    # Dense, gap-free position in the log (assigned under the log_state row lock).
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    # The exact canonical JSON bytes hashed into the leaf.
    entry: str = Field(sa_column=Column(Text, nullable=False))
    action: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    actor_user_id: int | None = Field(default=None, index=True)
    org_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class LogNode(SQLModel, table=True):
    """Hash of the perfect subtree of 2**level leaves starting at leaf index * 2**level."""

    __tablename__ = "log_nodes"

    level: int = Field(primary_key=True)
    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class LogCheckpoint(SQLModel, table=True):
    __tablename__ = "log_checkpoints"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: str = Field(sa_column=Column(String(64), nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class LogCosignature(SQLModel, table=True):
    """A witness's c2sp.org/tlog-cosignature line for one signed checkpoint size."""

    __tablename__ = "log_cosignatures"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(sa_column=Column(String(255), primary_key=True))
    line: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class PolicyVersion(SQLModel, table=True):
    """One version of a gated tier's access policy; version 1 comes from the signed statement."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("release_id", "tier", "version", name="uq_policy_version"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    version: int = Field(nullable=False)
    policy_json: str = Field(sa_column=Column(Text, nullable=False))
    # None for version 1, which the publisher's signed release statement decided.
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class AccessRequestStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    denied = "denied"


class AccessRequest(SQLModel, table=True):
    """A submitted usage attestation and what became of it."""

    __tablename__ = "access_requests"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    key_id: str = Field(sa_column=Column(String(64), nullable=False))
    # UNIQUE in the database: a replayed attestation fails here, whichever process sees it.
    nonce: str = Field(sa_column=Column(String(128), unique=True, nullable=False))
    # The DSSE envelope exactly as submitted, so anyone can re-verify the decision later.
    attestation: str = Field(sa_column=Column(Text, nullable=False))
    attestation_digest: str = Field(sa_column=Column(String(64), nullable=False))
    fields_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    policy_version_id: int = Field(foreign_key="policy_versions.id")
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    decided_by: int | None = Field(default=None, foreign_key="users.id")
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    attestation_expires_at: datetime = Field(sa_column=_ts())
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class Grant(SQLModel, table=True):
    """Access to one gated tier for one account, until ``expires_at`` or revocation."""

    __tablename__ = "grants"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    request_id: int = Field(foreign_key="access_requests.id", unique=True)
    policy_version_id: int = Field(foreign_key="policy_versions.id")
    decision: str = Field(sa_column=Column(String(16), nullable=False))  # "auto" or "manual"
    decided_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_by: int | None = Field(default=None, foreign_key="users.id")
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class OAuthClient(SQLModel, table=True):
    """A service's client-credentials identity, acting for (and never beyond) its owner."""

    __tablename__ = "oauth_clients"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    # sha256 of the secret (256 random bits, so no KDF is needed); the secret is never stored.
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    user_id: int = Field(foreign_key="users.id", index=True)
    scopes: str = Field(sa_column=Column(String(500), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # The API token that registered the client (none when an operator did): the client lives
    # only as long as that token, like a token minted by it.
    parent_token_id: int | None = Field(default=None, index=True)


class RevokedJti(SQLModel, table=True):
    """An access token revoked before its expiry (RFC 7009), checked on every use."""

    __tablename__ = "revoked_jtis"

    jti: str = Field(sa_column=Column(String(64), primary_key=True))
    client_id: str = Field(sa_column=Column(String(64), nullable=False))
    expires_at: datetime = Field(sa_column=_ts())
    revoked_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class RateLimitCounter(SQLModel, table=True):
    """A fixed-window counter, bumped by one atomic upsert so every replica shares it."""

    __tablename__ = "rate_limits"

    bucket: str = Field(sa_column=Column(String(200), primary_key=True))
    window_start: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    count: int = Field(nullable=False)


class DownloadLink(SQLModel, table=True):
    """An issued download link: what it opens and how many bytes it has served.

    The link itself is a self-contained signed token; this row exists so that the byte budget
    holds across gateway processes (one atomic UPDATE per response) and issuance is auditable.
    """

    __tablename__ = "download_links"

    # The link id carried in the signed claim (random, url-safe).
    id: str = Field(sa_column=Column(String(32), primary_key=True))
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    path: str = Field(sa_column=Column(String(1024), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    grant_id: int | None = Field(default=None, foreign_key="grants.id", index=True)
    key_id: str = Field(sa_column=Column(String(32), nullable=False))
    issued_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    byte_budget: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_served: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class WebSession(SQLModel, table=True):
    """A signed-in browser session; kept in the database so every replica accepts it."""

    __tablename__ = "web_sessions"

    # sha256 of the random cookie value: a stolen database row cannot be replayed as a cookie.
    id_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    user_id: int = Field(foreign_key="users.id", index=True)
    # Random secret the session's CSRF tokens are derived from (HMAC), never sent as-is.
    csrf_secret: str = Field(sa_column=Column(String(64), nullable=False))
    # How the account signed in: "password" or "oidc".
    method: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())


class WatermarkKeyRecord(SQLModel, table=True):
    """A derived watermark key in use: its public id and config, never its secret.

    ``next_tag`` is the call-tag counter of this key, bumped by one atomic UPDATE so that
    every gateway process draws distinct tags (see docs/generation.md).
    """

    __tablename__ = "watermark_keys"

    key_id: str = Field(sa_column=Column(String(16), primary_key=True))
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    config_json: str = Field(sa_column=Column(Text, nullable=False))
    next_tag: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class VllmWatermarkKeyRecord(SQLModel, table=True):
    """A vLLM watermark key (``--watermark-config``) a publisher registered for a model tier.

    ``sealed`` is the key under AES-GCM with a key derived from the watermark master key
    (``gateway.services.vllm_watermark_keys``); only detection opens it.
    """

    __tablename__ = "vllm_watermark_keys"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    context_width: int
    deduplicate_contexts: bool
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
