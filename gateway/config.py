"""Gateway settings, read from `TIERGATE_*` environment variables at the entry points only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["text", "json"]


class Settings(BaseSettings):
    """Everything the gateway can be configured with.

    Built once by the CLI (`Settings()` reads the environment) and passed down; no other
    module reads the environment.
    """

    model_config = SettingsConfigDict(env_prefix="TIERGATE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path("./data"), description="SQLite file, local blobs and keys live here."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/tiergate.db. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    keys_dir: Path | None = Field(
        default=None,
        description="Where gateway secrets and signing keys live; default <data_dir>/keys.",
    )
    blob_dir: Path | None = Field(
        default=None, description="Local blob storage root; default <data_dir>/blobs."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="Absolute URL clients reach the gateway at (for links)."
    )
    log_level: str = "info"
    log_format: LogFormat = "text"
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest JSON body accepted.")
    max_upload_chunk_bytes: int = Field(default=64 << 20, ge=1 << 16)
    token_default_ttl_days: int = Field(default=90, ge=1)
    auto_migrate: bool = Field(default=True, description="Apply migrations when the app starts.")
    db_retry_seconds: float = Field(default=2.0, gt=0)
    # OpenID Connect sign-in for the web UI (all unset: password sign-in only).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str | None = None
    oidc_username_claim: str | None = None
    oidc_label: str | None = None
    log_integrate_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often appended log entries are integrated and signed."
    )
    log_selfcheck_max_entries: int | None = Field(
        default=None,
        ge=1,
        description="Start-up tamper check over only the newest N entries (None: the whole log).",
    )
    log_anchor_file: Path | None = Field(
        default=None,
        description="Where the latest signed checkpoint is remembered outside the database "
        "(rollback detection); default <keys_dir>/log-checkpoint-anchor.note. Must survive "
        "restarts and must not be restored with the database.",
    )
    log_witnesses: list[str] = Field(
        default_factory=list,
        description="Witnesses that cosign checkpoints (c2sp.org/tlog-witness), each "
        "'<witness vkey> <submission URL>'.",
    )
    log_witness_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    log_recheck_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="While idle, re-verify one window of integrated entries this often.",
    )
    # Gated access: how strictly submitted usage attestations are judged.
    attestation_max_bytes: int = Field(default=64 << 10, ge=1024, le=1 << 20)
    attestation_max_age_seconds: int = Field(
        default=900, ge=30, description="How old an attestation's issued_at may be on arrival."
    )
    attestation_max_skew_seconds: int = Field(default=120, ge=0, le=3600)
    attestation_max_lifetime_seconds: int = Field(default=24 * 3600, ge=60)
    # OAuth2 client credentials: issuer and audience default to the public base URL.
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_token_ttl_seconds: int = Field(default=600, ge=30, le=24 * 3600)
    # Fixed-window rate limits, kept in the database so they hold across replicas.
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_tokens_per_account: int = Field(default=30, ge=1)
    rate_limit_tokens_per_address: int = Field(default=120, ge=1)
    rate_limit_attestations_per_account: int = Field(default=30, ge=1)
    rate_limit_attestations_per_address: int = Field(default=120, ge=1)
    link_default_ttl_seconds: int = Field(
        default=900, ge=10, description="Lifetime of a download link unless asked otherwise."
    )
    link_max_ttl_seconds: int = Field(
        default=3600, ge=10, description="Longest lifetime a download link may be issued for."
    )
    link_budget_factor: float = Field(
        default=3.0, ge=1.0, description="Bytes one link may serve, as a multiple of the file size."
    )
    link_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew tolerated on link nbf/exp."
    )
    rate_limit_links_per_account: int = Field(
        default=1000, ge=1, description="Links one account may ask for per rate-limit window."
    )
    # Blob storage: the local directory (embedded default) or an S3-compatible bucket (scale out).
    storage_backend: Literal["local", "s3"] = Field(
        default="local", description="Where blobs live: a local directory or an S3 bucket."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint (MinIO: http://minio:9000); None = AWS."
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint clients reach presigned URLs at (SigV4 signs the host); "
        "default s3_endpoint_url.",
    )
    s3_bucket: str | None = Field(default=None, description="Bucket name (required for s3).")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket.")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = Field(
        default=None, description="None = the default AWS credential chain (IAM role, env)."
    )
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    s3_presign_max_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Longest life of a presigned download URL (never longer than its link's).",
    )
    s3_part_size_bytes: int = Field(default=8 << 20, ge=5 << 20, le=5 << 30)
    # Generation (OpenAI-compatible API) and watermark detection.
    generation_model_cache_bytes: int = Field(
        default=4 << 30, ge=1 << 20, description="Memory budget of loaded models (LRU)."
    )
    generation_max_tokens: int = Field(default=512, ge=1, description="Cap on max_tokens.")
    generation_max_n: int = Field(default=4, ge=1, le=64, description="Cap on n (choices).")
    generation_max_prompt_tokens: int = Field(default=2048, ge=1)
    generation_max_prompts: int = Field(
        default=16, ge=1, le=1024, description="Cap on prompts per completions call (arrays)."
    )
    generation_tokens_per_minute: int = Field(
        default=50_000, ge=1, description="Per-account quota: prompt + completion tokens."
    )
    generation_retain_plaintext: bool = Field(
        default=False, description="Log prompts and outputs as text (else sha256 digests only)."
    )
    generation_batch_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="How long a request waits for company when the model is idle (0: none; "
        "requests arriving while a batch runs are batched anyway).",
    )
    generation_max_batch: int = Field(default=8, ge=1, le=256)
    # Engines: which release tiers are sampled by pools of vLLM servers (the rest: in process).
    engines_file: Path | None = Field(
        default=None,
        description="TOML file of [[engine]] entries (model, urls, served_model_name, "
        "api_key_env, timeout_s) routing release tiers to vLLM OpenAI servers; unset: every "
        "model runs on the local engine. See docs/generation.md.",
    )
    engine_health_interval_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="How often each engine replica is re-checked."
    )
    engine_canary_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        le=24 * 3600,
        description="How often a ready replica must prove its watermark again (canary).",
    )
    watermark_delta: float = Field(default=2.0, gt=0, le=20)
    watermark_payload_bits: int = Field(default=20, ge=8, le=32)
    rate_limit_detections_per_account: int = Field(default=120, ge=1)
    # POST /v1/moderations calls per account per rate_limit_window_seconds (checks are CPU).
    rate_limit_moderations_per_account: int = Field(default=120, ge=1)
    # Flaw reports and their comments (API, Hub discussion routes, web form): report spam.
    rate_limit_reports_per_account: int = Field(default=20, ge=1)
    rate_limit_reports_per_address: int = Field(default=60, ge=1)
    rate_limit_reports_window_seconds: int = Field(default=3600, ge=1)
    # Evaluation attestations beside releases (POST .../evaluations): each may be 8 MiB that is
    # parsed, checked against every registered key and stored; hourly, like reports.
    rate_limit_eval_attestations_per_account: int = Field(default=30, ge=1)
    rate_limit_eval_attestations_per_address: int = Field(default=90, ge=1)
    rate_limit_eval_attestations_window_seconds: int = Field(default=3600, ge=1)
    # C2PA Content Credentials (docs/provenance.md): the gateway signs a manifest per choice.
    c2pa_cert_chain: Path | None = Field(
        default=None,
        description="PEM certificate chain that signs Content Credentials (signing certificate "
        "first); None: a local CA generated in keys_dir (c2pa-*.pem).",
    )
    c2pa_private_key: Path | None = Field(
        default=None, description="PEM private key of the chain's signing certificate."
    )
    c2pa_trust_anchor: Path | None = Field(
        default=None,
        description="PEM root the chain must reach; published at "
        "/.well-known/tiergate/c2pa-root.pem. Required with c2pa_cert_chain.",
    )
    rate_limit_soft_binding_per_address: int = Field(
        default=60, ge=1, description="Soft-binding resolution requests per client address."
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @model_validator(mode="after")
    def _c2pa_chain_is_complete(self) -> Settings:
        given = [self.c2pa_cert_chain, self.c2pa_private_key, self.c2pa_trust_anchor]
        if any(v is not None for v in given) and any(v is None for v in given):
            raise ValueError("c2pa_cert_chain, c2pa_private_key and c2pa_trust_anchor go together")
        return self

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("storage_backend 's3' needs TIERGATE_S3_BUCKET")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tiergate.db').resolve()}"

    @property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir if self.keys_dir is not None else self.data_dir / "keys"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def resolved_oauth_issuer(self) -> str:
        return (self.oauth_issuer or self.base_url).rstrip("/")

    @property
    def resolved_oauth_audience(self) -> str:
        return (self.oauth_audience or self.base_url).rstrip("/")
