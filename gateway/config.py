"""Gateway settings, read from `TIERGATE_*` environment variables at the entry points only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
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

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

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
